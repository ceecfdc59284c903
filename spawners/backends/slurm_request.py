"""What the Slurm backend sends: the sbatch argument list and the batch script.

Pure functions over a :class:`JobSpec`; nothing here runs a command. Every value that
reaches Slurm is checked against a strict pattern or quoted for ``/bin/sh`` with
:func:`shlex.quote`, and refused with a :class:`BackendError` the user may read
otherwise.

The job's environment is written into the batch script, never passed on sbatch's
command line, so a comma, quote or ``$(...)`` in a value reaches the job unchanged.
sbatch itself runs with ``--export=ALL`` and an environment holding nothing but
SLURM_CONF (when the hub has it): the job then starts with exactly Slurm's own
variables, and the script adds ``spec.env``. (``--export=NONE`` or a list of names
would not do: in Slurm 22.05 both imply ``--get-user-env``, and the job would start
with the login environment of the user on the node.)
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gpuaf.errors import BackendError
from gpuaf.profiles import SliceProfile
from gpuaf.spawners.backends.base import JobSpec
from gpuaf.spawners.backends.checks import ENV_KEY, TAG_KEY

TAG_PREFIX = "gpuaf:"  # every portal job's --comment starts with it
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")
TAG_VALUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}$")
ACCOUNT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
CONTROL = re.compile(r"[\x00\r\n]")
# set by Slurm for the job from what it allocated; a value from the portal would lie
SLURM_OWNED = re.compile(
    r"^(SLURM_.*|CUDA_VISIBLE_DEVICES|GPU_DEVICE_ORDINAL|ROCR_VISIBLE_DEVICES)$"
)
BACKEND_OWNED = {"GPUAF_SECRETS_FILE", "GPUAF_JOB_ID"}
# the batch script is kept by slurmctld and shown by `scontrol write batch_script`
SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD)$", re.IGNORECASE)


@dataclass(frozen=True)
class SlurmOptions:
    """The site's choices (settings ``backend.slurm``) that shape a request."""

    partition: str | None = None
    mps_gres: str = "shard"
    shards_per_gpu: int = 4
    account_from_group: bool = False


def shards(profile: SliceProfile, shards_per_gpu: int) -> int:
    """Shards that give an MPS profile its share of one GPU (at least one)."""
    pct = profile.mps_thread_percentage or 100
    return max(1, min(shards_per_gpu, round(pct / 100 * shards_per_gpu)))


def gres(profile: SliceProfile, options: SlurmOptions) -> str | None:
    """The ``--gres`` value of a profile, None for CPU-only ones.

    MIG profiles ask for ``gpu:<mig_profile>:1``: the site declares each MIG instance in
    gres.conf as a ``gpu`` whose Type is the profile's name (``Name=gpu Type=1g.18gb
    MultipleFiles=...``). Types that ``AutoDetect=nvml`` makes up (model prefixed) do not
    match and need such explicit lines.
    """
    if profile.kind == "gpu":
        return f"gpu:{profile.gpus}"
    if profile.kind == "mig":
        return f"gpu:{profile.mig_profile}:1"
    if profile.kind == "mps":
        if options.mps_gres == "mps":  # gres.conf Count=100 per GPU: the count is a percentage
            return f"mps:{profile.mps_thread_percentage}"
        return f"shard:{shards(profile, options.shards_per_gpu)}"
    return None


def walltime(seconds: int) -> str:
    days, rest = divmod(max(int(seconds), 1), 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days}-{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


def comment(spec: JobSpec) -> str:
    """``gpuaf:profile=<name>,<tag>=<value>,...``: how squeue output is recognised."""
    tags = {"profile": spec.profile.name}
    for key, value in spec.tags.items():
        if not TAG_KEY.match(key) or not TAG_VALUE.match(str(value)):
            raise BackendError(
                f"The job tag {key!r}={str(value)!r} cannot be passed to Slurm: tags are "
                "lower-case names with values of letters, digits and _ . @ + -.",
                status=400,
            )
        if key != "profile":
            tags[key] = str(value)
    return TAG_PREFIX + ",".join(f"{k}={v}" for k, v in tags.items())


def parse_comment(text: str) -> dict[str, str] | None:
    """The tags of a portal job's comment; None for a job that is not the portal's."""
    if not text.startswith(TAG_PREFIX):
        return None
    pairs = (item.partition("=") for item in text[len(TAG_PREFIX) :].split(","))
    return {k: v for k, _, v in pairs if k}


def job_environment(spec: JobSpec, options: SlurmOptions) -> dict[str, str]:
    """spec.env, checked, plus the MPS variables Slurm does not set for shard jobs."""
    env: dict[str, str] = {}
    for key, value in spec.env.items():
        if not ENV_KEY.match(key):
            raise BackendError(f"{key!r} is not a valid environment variable name.", status=400)
        if SLURM_OWNED.match(key) or key in BACKEND_OWNED:
            raise BackendError(
                f"The environment variable {key} is set for the job by the batch system; "
                "the portal cannot set it.",
                status=400,
            )
        if SECRET_NAME.search(key):
            raise BackendError(
                f"The portal tried to pass {key} in the job's visible environment instead of "
                "its secrets file. This is a bug; please tell the facility admins.",
                status=500,
                log_message=f"{key} belongs in JobSpec.secrets, not JobSpec.env",
            )
        if CONTROL.search(str(value)):
            raise BackendError(
                f"The value of the environment variable {key} contains a line break or NUL "
                "character, which a batch job cannot receive.",
                status=400,
            )
        env[key] = str(value)
    profile = spec.profile
    if profile.kind == "mps":
        if options.mps_gres == "shard":  # with gres mps Slurm sets it itself
            env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = str(profile.mps_thread_percentage)
        if profile.mps_pinned_memory:
            env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] = f"0={profile.mps_pinned_memory}M"
    return env


def batch_script(spec: JobSpec, options: SlurmOptions, secrets_file: Path | None) -> str:
    """The job's /bin/sh script: its whole environment, then exec of the command."""
    if not spec.command:
        raise BackendError("The job has no command to run.", status=400)
    for arg in spec.command:  # quoted, a line break is safe: #SBATCH lines end above
        if "\0" in arg:
            raise BackendError(
                "An argument of the job's command contains a NUL character.", status=400
            )
    lines = [
        "#!/bin/sh",
        f"# {spec.name}: written by gpuaf; the job's environment is Slurm's plus this",
    ]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in job_environment(spec, options).items()]
    lines.append("export SLURM_EXPORT_ENV=ALL")  # job steps inherit this environment
    lines.append('export GPUAF_JOB_ID="$SLURM_JOB_ID"')
    if secrets_file is not None:
        lines.append(f"export GPUAF_SECRETS_FILE={shlex.quote(str(secrets_file))}")
    lines.append("exec " + shlex.join(spec.command))
    return "\n".join(lines) + "\n"


def sbatch_args(spec: JobSpec, options: SlurmOptions, log_dir: Path) -> list[str]:
    """Options of sbatch (without the program), one argument each, values validated."""
    if not NAME.match(spec.name):
        raise BackendError(
            f"The job name {spec.name!r} cannot be passed to Slurm: use letters, digits "
            "and _ . + - (at most 128).",
            status=400,
        )
    profile = spec.profile
    output = str(log_dir).replace("%", "%%") + "/%j.out"  # a literal % must be doubled
    args = [
        "--parsable",
        "--export=ALL",  # of an environment of SLURM_CONF only: see the module's docstring
        f"--job-name={spec.name}",
        f"--comment={comment(spec)}",
        f"--output={output}",
        "--nodes=1",
        "--ntasks=1",
        f"--cpus-per-task={profile.cpus}",
        f"--mem={profile.memory}M",
        f"--time={walltime(profile.walltime)}",
    ]
    requested = gres(profile, options)
    if requested:
        args.append(f"--gres={requested}")
    if options.partition:
        args.append(f"--partition={options.partition}")
    if options.account_from_group and spec.accounting_group:
        if not ACCOUNT.match(spec.accounting_group):
            raise BackendError(
                f"The group {spec.accounting_group!r} cannot be used as a Slurm account.",
                status=400,
            )
        args.append(f"--account={spec.accounting_group}")
    if spec.workdir is not None:
        if not spec.workdir.is_absolute() or CONTROL.search(str(spec.workdir)):
            raise BackendError("The job's working directory must be an absolute path.", status=400)
        args.append(f"--chdir={spec.workdir}")
    return args


def secrets_json(secrets: Mapping[str, str]) -> dict[str, str]:
    for key in secrets:
        if not ENV_KEY.match(key):
            raise BackendError(f"{key!r} is not a valid environment variable name.", status=400)
    return {k: str(v) for k, v in secrets.items()}
