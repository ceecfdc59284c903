"""FakeSchedd and FakeCollector: test doubles of the htcondor2 surface the backend uses.

No HTCondor daemon can run here, so these stand in for ``htcondor2.Schedd`` and
``htcondor2.Collector`` with the same method names and parameters (a test checks that
against the installed bindings). Everything else is real: submit descriptions are real
``htcondor2.Submit`` objects, job and slot ads are real ``classad2.ClassAd`` objects and
query constraints are evaluated by classad2. Methods named ``fake_*`` are test controls
with no counterpart in htcondor2 (they move jobs through their life like a pool would).

``load_slot_ads()`` reads the reference slot ads (``{"expr": ...}`` is an expression,
other objects are nested ads, ``__comment__`` is skipped).

The slice profiles the HTCondor tests run through are at the end: ``CATALOGUE`` (the
embedded default settings), ``WIDE`` (A100-40GB/80GB, H100 and H200 MIG profiles, MPS
25/50 %, 1/2/4/8 whole GPUs, CPU) and ``ALL`` (both; the default ones renamed
``default-<name>``). Their matching table against the reference slot ads is in
tests/test_backend_htcondor_match.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import htcondor2

# isort: split
import classad2

from gpuaf.profiles import SliceProfile
from gpuaf.settings import load_settings

# realistic slot ads (whole H100s, A100 MIG, H200 mixed MIG, -divide shares, CPU only)
SLOT_ADS = Path(__file__).resolve().parent.parent / "data" / "htcondor" / "slot_ads"


def _value(value: object) -> object:
    if isinstance(value, dict):
        if set(value) == {"expr"}:
            return classad2.ExprTree(value["expr"])
        ad = classad2.ClassAd()
        for key, item in value.items():
            if key != "__comment__":
                ad[key] = _value(item)
        return ad
    return value


def load_slot_ad(path: Path) -> classad2.ClassAd:
    return _value(json.loads(path.read_text()))


def load_slot_ads(folder: Path = SLOT_ADS) -> dict[str, classad2.ClassAd]:
    """Slot ads by short name: a, b, b2, c, d, e."""
    assert len(list(folder.glob("*.json"))) == 6, f"reference slot ads missing in {folder}"
    return {p.stem.split("_", 1)[0]: load_slot_ad(p) for p in sorted(folder.glob("*.json"))}


def _project(ad: classad2.ClassAd, projection: list[str] | None) -> classad2.ClassAd:
    if not projection:
        return classad2.parseOne(ad.printOld())
    out = classad2.ClassAd()
    for key in projection:
        if key in ad:
            out[key] = ad.lookup(key)
    return out


def _matches(ad: classad2.ClassAd, constraint: object) -> bool:
    if constraint is None or constraint == "":
        return True
    expr = (
        constraint if isinstance(constraint, classad2.ExprTree) else classad2.ExprTree(constraint)
    )
    return expr.eval(ad) is True


class FakeSubmitResult:
    def __init__(self, cluster: int, ad: classad2.ClassAd, procs: int = 1):
        self._cluster, self._ad, self._procs = cluster, ad, procs

    def cluster(self) -> int:
        return self._cluster

    def first_proc(self) -> int:
        return 0

    def num_procs(self) -> int:
        return self._procs

    def clusterad(self) -> classad2.ClassAd:
        return self._ad


class FakeSchedd:
    """A schedd's job queue and history in memory; records every call in ``calls``."""

    def __init__(self, first_cluster: int = 100):
        self.next_cluster = first_cluster
        self.jobs: dict[str, classad2.ClassAd] = {}
        self.done: dict[str, classad2.ClassAd] = {}
        self.submitted: list[htcondor2.Submit] = []
        self.spooled: list[int] = []
        self.calls: list[tuple[str, dict]] = []
        self.fail_with: Exception | None = None

    def _call(self, name: str, **kw) -> None:
        self.calls.append((name, kw))
        if self.fail_with is not None:
            raise self.fail_with

    def submit(self, description, count=0, spool=False, itemdata=None, queue=None):
        self._call("submit", count=count, spool=spool)
        assert isinstance(description, htcondor2.Submit)
        cluster = self.next_cluster
        self.next_cluster += 1
        ad = classad2.ClassAd()
        now = int(time.time())
        for key, value in dict(description).items():
            if key.startswith("MY."):
                ad[key[3:]] = classad2.ExprTree(value)
        ad.update(ClusterId=cluster, JobStatus=1, QDate=now, EnteredCurrentStatus=now)
        ad["Iwd"] = description.get("initialdir", "")
        # as the schedd: count overrides the queue statement's, which defaults to 1
        procs = count or int((description.getQArgs() or "1").split()[0])
        for proc in range(procs):
            job = classad2.ClassAd()  # a copy per proc
            for key in ad:
                job[key] = ad.lookup(key)
            job["ProcId"] = proc
            self.jobs[f"{cluster}.{proc}"] = job
        self.submitted.append(description)
        return FakeSubmitResult(cluster, self.jobs[f"{cluster}.0"], procs)

    def spool(self, result):
        self._call("spool", cluster=result.cluster())
        self.spooled.append(result.cluster())

    def query(self, constraint="True", projection=[], callback=None, limit=-1, opts=None):  # noqa: B006
        self._call("query", constraint=str(constraint), projection=list(projection))
        ads = [_project(a, projection) for a in self.jobs.values() if _matches(a, constraint)]
        return ads[:limit] if limit >= 0 else ads

    def history(self, constraint=None, projection=[], match=-1, since=None):  # noqa: B006
        self._call("history", constraint=str(constraint), projection=list(projection))
        ads = [_project(a, projection) for a in self.done.values() if _matches(a, constraint)]
        return ads[:match] if match >= 0 else ads

    def act(self, action, job_spec, reason=None):
        self._call("act", action=action, job_spec=job_spec, reason=reason)
        specs = [job_spec] if isinstance(job_spec, str | int) else list(job_spec)
        found = 0
        for spec in map(str, specs):
            key = spec if "." in spec else f"{spec}.0"
            if key in self.jobs and action == htcondor2.JobAction.Remove:
                self.fake_finish(key, 3)
                found += 1
        return classad2.ClassAd({"TotalSuccess": found, "TotalNotFound": len(specs) - found})

    # -- test controls -------------------------------------------------
    def fake_set(self, job_id: str, **attrs: object) -> None:
        """Change a queued job, e.g. fake_set("100.0", JobStatus=2, RemoteHost=...)."""
        ad = self.jobs[job_id]
        if "JobStatus" in attrs:
            ad["EnteredCurrentStatus"] = int(time.time())
        ad.update(attrs)

    def fake_finish(self, job_id: str, status: int = 4, **attrs: object) -> None:
        """The job leaves the queue for the history (4 completed, 3 removed)."""
        ad = self.jobs.pop(job_id)
        ad.update(JobStatus=status, **attrs)
        self.done[job_id] = ad

    def fake_forget(self, job_id: str) -> None:
        """The history rotated: the schedd no longer knows the job."""
        self.jobs.pop(job_id, None)
        self.done.pop(job_id, None)

    def fake_calls(self, name: str) -> int:
        return sum(1 for call, _ in self.calls if call == name)


class FakeCollector:
    """A collector holding slot ads; counts its queries."""

    def __init__(self, ads: list[classad2.ClassAd] | None = None, pool: str | None = None):
        self.ads = list(ads or [])
        self.pool = pool
        self.queries: list[dict] = []
        self.fail_with: Exception | None = None

    def query(self, ad_type=None, constraint=None, projection=None, statistics=None):
        self.queries.append({"ad_type": ad_type, "constraint": constraint})
        if self.fail_with is not None:
            raise self.fail_with
        return [_project(a, projection) for a in self.ads if _matches(a, constraint)]

    def locate(self, daemon_type, name=None):
        return classad2.ClassAd({"MyType": "Scheduler", "Name": name or "schedd"})


def fake_factories(schedd: FakeSchedd, collector: FakeCollector) -> dict:
    """Keyword arguments for HTCondorBackend that hand out the two doubles."""
    return {"schedd_factory": lambda: schedd, "collector_factory": lambda: collector}


def iter_doubles() -> Iterator[tuple[type, type]]:
    yield FakeSchedd, htcondor2.Schedd
    yield FakeCollector, htcondor2.Collector


# -- profiles and the expected matching table ----------------------------
def profile(name: str, **kw) -> SliceProfile:
    return SliceProfile(name=name, display_name=name, **kw)


WIDE = [
    profile("cpu-small", kind="cpu", cpus=1, memory="2G", walltime="12h"),
    profile("cpu-big", kind="cpu", cpus=16, memory="64G"),
    profile("a100-40-1g.5gb", kind="mig", mig_profile="1g.5gb", gpu_models=["A100-40GB"]),
    profile("a100-40-3g.20gb", kind="mig", mig_profile="3g.20gb", gpu_models=["A100-40GB"]),
    profile("a100-80-1g.10gb", kind="mig", mig_profile="1g.10gb", gpu_models=["A100-80GB"]),
    profile("a100-80-3g.40gb", kind="mig", mig_profile="3g.40gb", gpu_models=["A100-80GB"]),
    profile("h100-1g.10gb", kind="mig", mig_profile="1g.10gb", gpu_models=["H100"]),
    profile("h100-2g.20gb", kind="mig", mig_profile="2g.20gb", gpu_models=["H100"]),
    profile("h200-1g.18gb", kind="mig", mig_profile="1g.18gb", gpu_models=["H200"]),
    profile("h200-1g.18gb+me", kind="mig", mig_profile="1g.18gb+me", gpu_models=["H200"]),
    profile("h200-2g.35gb", kind="mig", mig_profile="2g.35gb", gpu_models=["H200"]),
    profile("h200-3g.71gb", kind="mig", mig_profile="3g.71gb", gpu_models=["H200"]),
    profile("h200-7g.141gb", kind="mig", mig_profile="7g.141gb", gpu_models=["H200"]),
    profile("any-1g.10gb", kind="mig", mig_profile="1g.10gb"),
    profile("mps-25", kind="mps", mps_thread_percentage=25, mps_pinned_memory="20G"),
    profile("mps-50", kind="mps", mps_thread_percentage=50),
    profile("mps-50-40g", kind="mps", mps_thread_percentage=50, mps_pinned_memory="40G"),
    profile(
        "mps-25-h100",
        kind="mps",
        mps_thread_percentage=25,
        mps_pinned_memory="20G",
        gpu_models=["H100"],
    ),
    profile("h100-x1", kind="gpu", gpus=1, gpu_models=["H100"], cpus=4, memory="32G"),
    profile("h100-x2", kind="gpu", gpus=2, gpu_models=["H100"], cpus=8, memory="64G"),
    profile("h100-x4", kind="gpu", gpus=4, gpu_models=["H100"], cpus=16, memory="128G"),
    profile("a100-80-x1", kind="gpu", gpus=1, gpu_models=["A100-80GB"]),
    profile("a100-40-x1", kind="gpu", gpus=1, gpu_models=["A100-40GB"]),
    profile("any-x1", kind="gpu", gpus=1),
    profile("any-x8", kind="gpu", gpus=8),
]

CATALOGUE = list(load_settings().profiles)  # the embedded default settings
ALL = [*WIDE, *(p.model_copy(update={"name": f"default-{p.name}"}) for p in CATALOGUE)]
