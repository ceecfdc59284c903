"""Dask clusters through the real portal on the local backend: refusals that leave nothing
behind, a LocalCluster that computes and is recorded as a job of kind dask, its page, and
closing it. (The real SLURMCluster is in test_e2e_slurm.py.)"""

from __future__ import annotations

import httpx
import pytest
from support.ledger_rows import audit_actions

pytestmark = pytest.mark.e2e


def clusters(stack, token, body):
    return httpx.post(
        f"{stack.api}/clusters", json=body, headers={"Authorization": f"token {token}"}, timeout=60
    )


def my_jobs(stack, token) -> list[str]:
    got = httpx.get(f"{stack.api}/jobs", headers={"Authorization": f"token {token}"})
    return [j["id"] for j in got.json()]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"slice": "mps-25", "workers": 2}, 400, "Slices you may book: cpu,"),
        ({"slice": "cpu", "workers": 0}, 400, "workers must be a whole number from 1 to 16"),
        ({"slice": "cpu", "workers": 2, "walltime": "9d"}, 400, "give 1m to 12 h"),
        ({"slice": "cpu", "workers": 2, "walltime": "soon"}, 400, "is not a duration"),
        ({"slice": "cpu", "workers": 2, "name": "a b"}, 400, "Job name 'a b' is not allowed"),
        ({"slice": "cpu", "workers": 2, "image": "x"}, 400, "Unknown field(s) image"),
    ],
)
def test_bad_cluster_requests_are_refused_and_nothing_is_recorded(
    stack, alice_token, body, status, message
):
    before = my_jobs(stack, alice_token)
    folders = set((stack.data_dir / "homes" / "alice").glob("gpuaf-jobs/*"))
    reply = clusters(stack, alice_token, body)
    assert reply.status_code == status, reply.text
    assert message in reply.json()["detail"]
    assert my_jobs(stack, alice_token) == before
    assert set((stack.data_dir / "homes" / "alice").glob("gpuaf-jobs/*")) == folders


def test_a_local_cluster_computes_is_recorded_and_closes(stack, alice, alice_token):
    from distributed import Client, LocalCluster

    from gpuaf.dask import facility_cluster

    portal = stack.api.removesuffix("/api/v1")
    auth = {"Authorization": f"token {alice_token}"}
    with facility_cluster(slice="cpu", workers=2, name="scan", portal=portal, token=alice_token,
                          dashboard_address=":0") as cluster:  # fmt: skip
        assert isinstance(cluster, LocalCluster) and len(cluster.workers) == 2
        with Client(cluster) as dask:
            assert dask.submit(sum, dask.map(pow, range(10), [2] * 10)).result() == 285
        job = httpx.get(f"{stack.api}/jobs/{cluster.gpuaf_id}", headers=auth).json()
        assert (job["kind"], job["workers"], job["state"]) == ("dask", 2, "running")
        assert job["reason"] == "Its workers run inside your session, on your session's slice."
        assert job["items"] == []  # nothing booked beyond the session's own slice
        page = alice.get(  # text/html: a first visit logs in with the hub
            f"{stack.url}services/portal/jobs/{cluster.gpuaf_id}", headers={"Accept": "text/html"}
        )
        assert page.status_code == 200
        assert "Dask cluster scan" in page.text and "Close this cluster" in page.text
        with pytest.raises(ValueError, match="booked 2 worker"):
            cluster.scale(4)
    job = httpx.get(f"{stack.api}/jobs/{cluster.gpuaf_id}", headers=auth).json()
    assert job["state"] == "succeeded"
    assert job["reason"] == "Closed by alice. Its workers ran inside the session."
    actions = audit_actions(stack.settings_path, "alice")
    assert actions.count("dask.create") >= 1 and "job.cancel" in actions  # both recorded
