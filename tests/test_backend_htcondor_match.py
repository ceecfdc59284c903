"""Each profile's HTCondor job, matched with the real classad2 against the reference slot ads.

``Submit.jobs()`` is not implemented in the bindings, so the job ad is built the way
condor_submit writes it (:func:`job_ad`); the reference's own eight job shapes check
that builder against the matches seen with real HTCondor (expected-matches.txt).
"""

from __future__ import annotations

from pathlib import Path

import htcondor2  # noqa: F401 - before classad2: registers countMatches

# isort: split
import classad2
import pytest
from support.fake_htcondor import ALL, load_slot_ads

from gpuaf.spawners.backends.base import JobSpec
from gpuaf.spawners.backends.htcondor_match import copy_ad, count_pool, emptied, fits, job_ad
from gpuaf.spawners.backends.htcondor_submit import SubmitConfig, build

SLOTS = load_slot_ads()
ADS = ("a", "b", "b2", "c", "d", "e")
# Profile by reference slot ad: x = the profile's job and the slot match both ways, as the
# ads stand. a: 4x H100 80GB whole; b: A100-40GB MIG 7x 1g.5gb; b2: b with 2 instances
# claimed; c: H200 MIG 3g.71gb + 2g.35gb + 2x 1g.18gb; d: 2x A100-80GB cut in 4 MPS
# shares each (-divide 4, GPUSharingMode "mps"); e: CPU only.
TABLE = """
profile               a  b  b2 c  d  e
cpu-small             x  x  x  x  x  x
cpu-big               x  x  x  x  x  x
a100-40-1g.5gb        .  x  x  .  .  .
a100-40-3g.20gb       .  .  .  .  .  .
a100-80-1g.10gb       .  .  .  .  .  .
a100-80-3g.40gb       .  .  .  .  .  .
h100-1g.10gb          .  .  .  .  .  .
h100-2g.20gb          .  .  .  .  .  .
h200-1g.18gb          .  .  .  x  .  .
h200-1g.18gb+me       .  .  .  .  .  .
h200-2g.35gb          .  .  .  x  .  .
h200-3g.71gb          .  .  .  x  .  .
h200-7g.141gb         .  .  .  .  .  .
any-1g.10gb           .  .  .  .  .  .
mps-25                .  .  .  .  x  .
mps-50                .  .  .  .  x  .
mps-50-40g            .  .  .  .  .  .
mps-25-h100           .  .  .  .  .  .
h100-x1               x  .  .  .  .  .
h100-x2               x  .  .  .  .  .
h100-x4               x  .  .  .  .  .
a100-80-x1            .  .  .  .  .  .
a100-40-x1            .  .  .  .  .  .
any-x1                x  .  .  .  .  .
any-x8                .  .  .  .  .  .
default-cpu           x  x  x  x  x  x
default-mig-1g.18gb   .  .  .  x  .  .
default-mig-3g.71gb   .  .  .  x  .  .
default-mps-25        .  .  .  .  .  .
default-gpu-1         x  .  .  .  .  .
default-gpu-2         x  .  .  .  .  .
"""
EXPECTED = {
    row.split()[0]: {ad for ad, cell in zip(ADS, row.split()[1:], strict=True) if cell == "x"}
    for row in TABLE.strip().splitlines()[1:]
}
BASE = {"request_cpus": "1", "request_memory": "1024", "request_disk": "1048576"}
# the job shapes of reference/htcondor/expected-matches.txt and the ads they matched
REFERENCE_JOBS = {
    "J1": ({"request_gpus": "1", "require_gpus": "GlobalMemoryMb >= 4000 && GlobalMemoryMb < 6000"}, "b b2"),  # noqa: E501
    "J2": ({"request_gpus": "1"}, "a b b2 c d"),
    "J3": ({"request_gpus": "2", "gpus_minimum_capability": "9", "gpus_minimum_memory": "40000"}, "a"),  # noqa: E501
    "J4": ({"request_gpus": "1", "gpus_minimum_memory": "16384"}, "a c d"),
    "J5": ({"request_gpus": "1", "require_gpus": 'regexp("MIG 3g", DeviceName)'}, "c"),
    "J6": ({"request_gpus": "1", "require_gpus": "DeviceMemoryMb >= 80000"}, "d"),
    "J7": ({"request_gpus": "1", "gpus_minimum_runtime": "12.4"}, "a c d"),
    "J8": ({}, "a b b2 c d e"),
}  # fmt: skip


CAPACITY: dict[str, dict[str, tuple[int, int]]] = {  # (fit now, fit when empty) if not 0
    "a100-40-1g.5gb": {"b": (7, 7), "b2": (5, 7)},
    "h200-1g.18gb": {"c": (2, 2)},
    "h200-2g.35gb": {"c": (1, 1)},
    "h200-3g.71gb": {"c": (1, 1)},
    "mps-25": {"d": (8, 8)},
    "h100-x1": {"a": (4, 4)},
    "h100-x2": {"a": (2, 2)},
    "h100-x4": {"a": (1, 1)},
    "cpu-big": {"a": (6, 6), "b": (2, 2), "b2": (1, 2), "c": (3, 3), "d": (4, 4), "e": (7, 7)},
}


def profile_job(profile, image=None) -> classad2.ClassAd:
    spec = JobSpec(name="t", user="alice", profile=profile, command=("/bin/true",), image=image)
    return job_ad(build(spec, SubmitConfig(), Path("/spool/x"), with_secrets=False))


def test_the_table_covers_every_profile():
    assert set(EXPECTED) == {p.name for p in ALL}


def test_htcondor_functions_are_registered():
    ad = SLOTS["c"]
    assert classad2.ExprTree("countMatches(GlobalMemoryMb > 0, AvailableGPUs)").eval(ad) == 4


@pytest.mark.parametrize("name", REFERENCE_JOBS)
def test_job_ads_built_like_condor_submit_match_as_in_the_reference(name):
    extra, expected = REFERENCE_JOBS[name]
    job = job_ad({**BASE, **extra})
    assert {k for k, slot in SLOTS.items() if job.symmetricMatch(slot)} == set(expected.split())


@pytest.mark.parametrize("profile", ALL, ids=lambda p: p.name)
def test_profile_matching_table(profile):
    job = profile_job(profile)
    matched = {k for k in ADS if job.symmetricMatch(SLOTS[k])}
    assert matched == EXPECTED[profile.name]
    # a job that matches an ad also fits it at least once, and only then
    assert {k for k in ADS if fits(job, SLOTS[k])} == matched


@pytest.mark.parametrize("profile", ALL, ids=lambda p: p.name)
def test_a_container_image_keeps_the_table_where_nodes_run_containers(profile):
    job = profile_job(profile, image="ghcr.io/collab/analysis:2.1")
    assert "TARGET.HasDockerURL" in str(job.lookup("Requirements"))
    assert {k for k in ADS if job.symmetricMatch(SLOTS[k])} == EXPECTED[profile.name]
    if EXPECTED[profile.name]:
        no_containers = copy_ad(SLOTS[sorted(EXPECTED[profile.name])[0]])
        no_containers["HasContainer"] = False
        assert not job.symmetricMatch(no_containers)


@pytest.mark.parametrize("name", sorted(CAPACITY))
def test_how_many_jobs_each_ad_takes(name):
    job = profile_job(next(p for p in ALL if p.name == name))
    for key in ADS:
        now, empty = CAPACITY[name].get(key, (0, 0))
        assert (fits(job, SLOTS[key]), fits(job, emptied(SLOTS[key]))) == (now, empty), key


def test_pool_counts_over_all_ads():
    by_name = {p.name: p for p in ALL}
    pool = count_pool(profile_job(by_name["a100-40-1g.5gb"]), SLOTS.values())
    assert (pool.capacity, pool.free) == (14, 12)  # b and b2 stand for two nodes here
    assert pool.nodes == 1  # ... that share one machine name
    pool = count_pool(profile_job(by_name["h100-x2"]), SLOTS.values())
    assert (pool.capacity, pool.free, pool.nodes) == (2, 2, 1)
    assert count_pool(profile_job(by_name["any-x8"]), SLOTS.values()).capacity == 0


def test_mps_needs_a_node_that_runs_the_mps_daemon():
    job = profile_job(next(p for p in ALL if p.name == "mps-25"))
    without = copy_ad(SLOTS["d"])
    del without["GPUSharingMode"]
    assert job.symmetricMatch(SLOTS["d"]) and not job.symmetricMatch(without)


def test_whole_gpus_never_land_on_mig_instances_or_shares():
    job = profile_job(next(p for p in ALL if p.name == "any-x1"))
    assert [k for k in ADS if job.symmetricMatch(SLOTS[k])] == ["a"]


def test_a_busy_node_offers_nothing_now_but_counts_for_capacity():
    job = profile_job(next(p for p in ALL if p.name == "h100-x1"))
    busy = copy_ad(SLOTS["a"])
    busy["GPUs"] = 0
    busy["AvailableGPUs"] = classad2.ExprTree("{}")
    assert (fits(job, busy), fits(job, emptied(busy))) == (0, 4)
    assert count_pool(job, [busy]).free == 0


def test_static_slots_and_odd_ads():
    job = profile_job(next(p for p in ALL if p.name == "h100-x1"))
    static = copy_ad(SLOTS["a"])
    static["PartitionableSlot"] = False
    static["State"] = "Claimed"
    odd = classad2.ClassAd({"Name": "odd@x", "Requirements": classad2.ExprTree("true")})
    pool = count_pool(job, [static, odd])
    assert (pool.capacity, pool.free) == (1, 0)
