"""HTCondor submit descriptions: every profile parses with the real htcondor2.Submit,
user values cannot break out of their value, secrets never enter a description."""

from __future__ import annotations

import os
import re
from pathlib import Path

import htcondor2
import pytest
from support.fake_htcondor import ALL, CATALOGUE, FakeCollector, FakeSchedd, fake_factories

from gpuaf.errors import BackendError
from gpuaf.profiles import SliceProfile
from gpuaf.spawners.backends.base import JobSpec
from gpuaf.spawners.backends.htcondor import HTCondorBackend
from gpuaf.spawners.backends.htcondor_jobs import checked_submit
from gpuaf.spawners.backends.htcondor_submit import SubmitConfig, build

IMAGES = [
    None,
    "ghcr.io/collab/analysis:2.1",
    "docker://registry.example.org/img:1",
    "/cvmfs/unpacked.cern.ch/img.sif",
]
HUB_ENV = {  # what JupyterHub's Spawner.get_env() hands a session, quotes included
    "JUPYTERHUB_API_URL": "http://hub.example.org:8081/hub/api",
    "JUPYTERHUB_OAUTH_SCOPES": '["access:servers!server=alice/", "access:servers!user=alice"]',
    "JUPYTERHUB_USER": "alice",
    "PS1": "it's $USER's shell> ",
}
TOKEN = "hub-token-7f3a9c0e5d2b4a1f"


def parse_v2(quoted: str) -> list[str]:
    """HTCondor's new argument syntax, read independently of the code under test."""
    assert quoted.startswith('"') and quoted.endswith('"'), quoted
    inner, raw, i = quoted[1:-1], "", 0
    while i < len(inner):  # "" is a literal "; a lone " cannot occur inside
        if inner[i] == '"':
            assert inner[i + 1 : i + 2] == '"', f"lone double quote in {quoted!r}"
            i += 1
        raw += inner[i]
        i += 1
    words, word, quoted_section, started, i = [], "", False, False, 0
    while i < len(raw):
        ch = raw[i]
        if quoted_section:
            if ch == "'" and raw[i + 1 : i + 2] == "'":
                word, i = word + "'", i + 2
                continue
            if ch == "'":
                quoted_section = False
            else:
                word += ch
        elif ch == "'":
            quoted_section = started = True
        elif ch in " \t":
            if started:
                words.append(word)
            word, started = "", False
        else:
            word, started = word + ch, True
        i += 1
    assert not quoted_section, f"unterminated single quote in {quoted!r}"
    if started:
        words.append(word)
    return words


def env_of(desc: dict[str, str]) -> dict[str, str]:
    return dict(w.split("=", 1) for w in parse_v2(desc["environment"]))


def spec(profile: SliceProfile, **kw) -> JobSpec:
    base = {
        "name": "gpuaf-s1",
        "user": "alice",
        "profile": profile,
        "command": ("gpuaf-job", "batchspawner-singleuser", "jupyterhub-singleuser", "--debug"),
        "env": HUB_ENV,
        "tags": {"portal": "gpuaf", "user": "alice", "session": "s1", "profile": profile.name},
        "accounting_group": "higgs",
    }
    return JobSpec(**{**base, **kw})


@pytest.fixture
def backend(tmp_path: Path) -> HTCondorBackend:
    return HTCondorBackend(
        **fake_factories(FakeSchedd(), FakeCollector()), spool_dir=tmp_path / "spool"
    )


def submit_dict(s: JobSpec, job_dir: str = "/spool/job", secrets: bool = False) -> dict:
    return build(s, SubmitConfig(), Path(job_dir), with_secrets=secrets)


@pytest.mark.parametrize("image", IMAGES)
@pytest.mark.parametrize("profile", ALL, ids=lambda p: p.name)
def test_every_description_parses_and_round_trips(backend, profile, image):
    s = spec(profile, image=image, secrets={"JUPYTERHUB_API_TOKEN": TOKEN})
    text = backend.describe(s)
    parsed = htcondor2.Submit(text)
    desc = dict(parsed)
    assert dict(htcondor2.Submit(str(parsed))) == desc
    assert parsed.getQArgs() == ""
    assert desc["getenv"] == "false" and desc["transfer_executable"] == "false"
    assert desc["MY.GpuafProfile"] == f'"{profile.name}"'
    assert desc["MY.GpuafPortal"] == '"gpuaf"' and desc["MY.GpuafUser"] == '"alice"'
    assert desc["accounting_group"] == "group_higgs" and desc["accounting_group_user"] == "alice"
    assert desc["request_memory"] == str(profile.memory)
    assert desc["allowed_execute_duration"] == str(profile.walltime)
    assert parse_v2(desc["arguments"]) == list(s.command)
    assert desc["executable"] == "/usr/bin/env"
    env = env_of(desc)
    assert {k: env[k] for k in HUB_ENV} == HUB_ENV
    assert env["GPUAF_SECRETS_FILE"] == desc["transfer_input_files"] == "gpuaf-secrets.json"
    assert TOKEN not in text
    if image:
        assert desc["universe"] == "container"
        assert desc["container_image"].startswith(("docker://", "/"))
    else:
        assert desc["universe"] == "vanilla" and "container_image" not in desc
    if profile.kind == "cpu":
        assert "request_gpus" not in desc and "require_gpus" not in desc
    else:
        assert desc["request_gpus"] == str(profile.gpus)
    if profile.kind == "mps":
        assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == str(profile.mps_thread_percentage)
        assert env["CUDA_MPS_PIPE_DIRECTORY"] == "/tmp/nvidia-mps"
        assert 'GPUSharingMode =?= "mps"' in desc["requirements"]
        if profile.mps_pinned_memory:
            limit = f"0={profile.mps_pinned_memory}M"
            assert env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == limit
            assert desc["gpus_minimum_memory"] == str(profile.mps_pinned_memory)
    else:
        assert not any(k.startswith("CUDA_MPS") for k in env)


def test_the_default_catalogue_is_covered():
    assert {p.kind for p in CATALOGUE} == {"cpu", "gpu", "mig", "mps"}
    assert {p.kind for p in ALL} == {"cpu", "gpu", "mig", "mps"}


def test_mig_memory_bound_is_below_what_nvml_reports():
    mig = next(p for p in ALL if p.name == "h200-1g.18gb")
    desc = submit_dict(spec(mig))
    assert 'DeviceName == "NVIDIA H200 MIG 1g.18gb"' in desc["require_gpus"]
    assert int(desc["gpus_minimum_memory"]) <= 16375 < 16384  # 1g.18gb has ~16 GiB


def test_an_absolute_command_is_the_executable():
    cpu = CATALOGUE[0]
    desc = submit_dict(spec(cpu, command=("/opt/bin/server", "--port=0")))
    assert desc["executable"] == "/opt/bin/server"
    assert parse_v2(desc["arguments"]) == ["--port=0"]


def test_the_hub_environment_is_never_copied(backend, monkeypatch):
    monkeypatch.setenv("GPUAF_TEST_HUB_ONLY", "hub-only-value-91c2")
    text = backend.describe(spec(CATALOGUE[0], env={"A": "1"}))
    assert "hub-only-value-91c2" not in text and "GPUAF_TEST_HUB_ONLY" not in text
    assert re.search(r"^getenv = false$", text, re.M)
    assert env_of(dict(htcondor2.Submit(text))).keys() == {"A", "GPUAF_JOB_ID"}


def test_variables_htcondor_sets_itself_are_not_passed():
    s = spec(CATALOGUE[0], env={"CUDA_VISIBLE_DEVICES": "0", "_CONDOR_SCRATCH_DIR": "/x"})
    assert env_of(submit_dict(s)).keys() == {"GPUAF_JOB_ID"}


# -- injection ------------------------------------------------------------------
BREAKOUTS = ['x" || true || "', "a\nqueue 100", "&& TARGET.Memory > 0", "it's", 'say "hi"']


@pytest.mark.parametrize("value", [*BREAKOUTS, "x\r\nqueue 5", "$ENV(HOME)", "$$(Memory)"])
@pytest.mark.parametrize("field", ["user", "session", "profile", "portal_tag", "name", "group"])
def test_tags_and_names_refuse_anything_but_plain_words(value, field):
    cpu = CATALOGUE[0]
    kw = {
        "user": {"user": value},
        "session": {"tags": {"session": value}},
        "profile": {"tags": {"profile": value}},
        "portal_tag": {"tags": {"extra_tag": value}},
        "name": {"name": value},
        "group": {"accounting_group": value},
    }[field]
    with pytest.raises(BackendError, match="may only hold"):
        submit_dict(spec(cpu, **kw))


@pytest.mark.parametrize(
    "value", [*BREAKOUTS[:1], *BREAKOUTS[2:], "'", '"', "''\"\"", "a  b c ", "ends with \\", "#x"]
)
@pytest.mark.parametrize("where", ["env", "argument"])
def test_quotes_and_operators_are_quoted_and_read_back_exactly(value, where):
    cpu = CATALOGUE[0]
    s = spec(cpu, env={"V": value}) if where == "env" else spec(cpu, command=("prog", value))
    desc = submit_dict(s)
    sub = checked_submit(desc, [])
    parsed = dict(htcondor2.Submit(str(sub)))
    assert parsed == desc and htcondor2.Submit(str(sub)).getQArgs() == ""
    if where == "env":
        assert env_of(parsed)["V"] == value
    else:
        assert parse_v2(parsed["arguments"]) == ["prog", value]


@pytest.mark.parametrize(
    "value",
    ["a\nqueue 100", "x\rqueue", "nul\x00", "$ENV(HUB_SECRET)", "$(Cluster)", "$$(Memory)",
     "$$([TARGET.Memory])", "$RANDOM_CHOICE(a,b)", "$INT(x)"],
)  # fmt: skip
@pytest.mark.parametrize("where", ["env", "argument"])
def test_line_breaks_and_macros_are_refused(value, where):
    cpu = CATALOGUE[0]
    s = spec(cpu, env={"V": value}) if where == "env" else spec(cpu, command=("prog", value))
    with pytest.raises(BackendError, match=r"line break|control character|reference"):
        submit_dict(s)


def test_a_plain_dollar_stays_literal():
    desc = submit_dict(spec(CATALOGUE[0], env={"PRICE": "5$ and $HOME"}))
    sub = checked_submit(desc, [])
    assert env_of({"environment": sub.expand("environment")})["PRICE"] == "5$ and $HOME"


@pytest.mark.parametrize("key", ["A B", "1X", "X=Y", "X\nqueue", 'X"', ""])
def test_bad_environment_names_are_refused(key):
    with pytest.raises(BackendError, match="not a valid name"):
        submit_dict(spec(CATALOGUE[0], env={key: "1"}))


@pytest.mark.parametrize(
    "command",
    [("prog name",), ("/bin/x y",), ("/bin/$(X)",), ("a\nqueue",), ('x" || true || "',), ()],
)
def test_bad_programs_are_refused(command):
    with pytest.raises(BackendError):
        submit_dict(spec(CATALOGUE[0], command=command))


@pytest.mark.parametrize("image", ["img:1\nqueue 3", 'img" || true', "img $(X)", "a b", "-x"])
def test_bad_images_are_refused(image):
    with pytest.raises(BackendError, match="not a valid image"):
        submit_dict(spec(CATALOGUE[0], image=image))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", 'x" || true || "'),
        ("mig_profile", '1g.18gb" || true || "'),
        ("mig_profile", "1g.18gb\nqueue 100"),
        ("cpus", "1\nqueue 100"),
        ("memory", "&& TARGET.Memory > 0"),
        ("walltime", True),
        ("gpus", "1 || true"),
        ("gpu_models", ['H100" || true || "']),
    ],
)
def test_profile_fields_that_skipped_validation_are_refused(field, value):
    """A profile built without validation (model_construct) still cannot inject."""
    base = next(p for p in ALL if p.name == "h200-1g.18gb").model_dump()
    bad = SliceProfile.model_construct(**{**base, field: value})
    with pytest.raises(BackendError):
        submit_dict(spec(bad, tags={}))


def test_the_raw_danger_is_real_and_the_guard_refuses_it():
    """Submit(dict) joins key = value lines: a newline in a value adds a queue statement."""
    bad = {"executable": "/bin/true", "MY.X": '"a\nqueue 100"'}
    assert htcondor2.Submit(bad).getQArgs() == '100"'
    with pytest.raises(BackendError, match="described safely"):
        checked_submit(bad, [])


# -- secrets --------------------------------------------------------------------
async def test_secrets_go_to_a_private_file_never_to_the_description(tmp_path):
    schedd = FakeSchedd()
    backend = HTCondorBackend(
        **fake_factories(schedd, FakeCollector()), spool_dir=tmp_path / "spool"
    )
    env = {**HUB_ENV, "JUPYTERHUB_API_TOKEN": TOKEN}  # also left in env by mistake
    s = spec(CATALOGUE[0], env=env, secrets={"JUPYTERHUB_API_TOKEN": TOKEN, "JPY_X": "v2"})
    assert TOKEN not in backend.describe(s)
    job = await backend.submit(s)
    sub = schedd.submitted[0]
    assert TOKEN not in str(sub) and all(TOKEN not in v for v in dict(sub).values())
    assert "JUPYTERHUB_API_TOKEN" not in env_of(dict(sub))
    secret_file = Path(sub["initialdir"]) / sub["transfer_input_files"]
    assert oct(secret_file.stat().st_mode & 0o777) == "0o600"
    assert oct(secret_file.parent.stat().st_mode & 0o777) == "0o700"
    assert secret_file.read_text() == f'{{"JUPYTERHUB_API_TOKEN": "{TOKEN}", "JPY_X": "v2"}}'
    assert env_of(dict(sub))["GPUAF_SECRETS_FILE"] == secret_file.name
    await backend.cancel(job)
    assert not secret_file.exists() and not secret_file.parent.exists()


async def test_secrets_are_deleted_when_the_job_is_gone(tmp_path):
    schedd = FakeSchedd()
    backend = HTCondorBackend(
        **fake_factories(schedd, FakeCollector()), spool_dir=tmp_path / "spool"
    )
    job = await backend.submit(spec(CATALOGUE[0], secrets={"JUPYTERHUB_API_TOKEN": TOKEN}))
    folder = Path(schedd.submitted[0]["initialdir"])
    await backend.status([job])
    assert (folder / "gpuaf-secrets.json").exists()  # still needed: the job may start again
    schedd.fake_finish(job, 4, ExitCode=0)
    await backend.status([job])
    assert not folder.exists()


def test_a_secret_in_an_argument_is_refused(backend):
    s = spec(CATALOGUE[0], command=("prog", f"--token={TOKEN}"), secrets={"T": TOKEN})
    with pytest.raises(BackendError, match="secret"):
        backend.describe(s)


async def test_a_refused_submission_leaves_no_secret_behind(tmp_path):
    schedd = FakeSchedd()
    schedd.fail_with = htcondor2.HTCondorException("Failed to connect to schedd")
    backend = HTCondorBackend(
        **fake_factories(schedd, FakeCollector()), spool_dir=tmp_path / "spool"
    )
    with pytest.raises(BackendError, match="did not accept"):
        await backend.submit(spec(CATALOGUE[0], secrets={"JUPYTERHUB_API_TOKEN": TOKEN}))
    left = [p for p in (tmp_path / "spool").rglob("*") if p.is_file()]
    assert left == []
    assert os.listdir(tmp_path / "spool" / "jobs") == []
