"""One reconcile round over 1,000 live sessions, next to a bare read of the same rows,
and one round in which every session changes state (one transaction).

    .venv/bin/python bench/bench_reconcile.py [--sessions 1000] [--rounds 5]

The ledger is SQLite in a temporary folder; the batch system is `AllRunning`, a stand-in
backend that reports every job running (the round's cost is then the ledger's and
gpuaf's own). The peer is the cheapest possible look at the same data: one SELECT of the
active sessions. Figures go to bench/results/reconcile.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import select

from gpuaf.ledger import Ledger, migrate
from gpuaf.ledger.models import FINAL_STATES, SessionEvent, SessionRecord
from gpuaf.reconcile import reconcile
from gpuaf.spawners.backends.base import Backend, JobState, JobStatus


class AllRunning(Backend):
    """Stand-in batch system for the benchmark: every job is running."""

    name = "local"

    async def submit(self, spec):  # pragma: no cover - the benchmark submits nothing
        return f"local-{spec.name}"

    async def status(self, job_ids):
        return {j: JobStatus(j, JobState.RUNNING, "node01") for j in job_ids}

    async def cancel(self, job_id):  # pragma: no cover - not used
        return None

    async def availability(self, profiles):  # pragma: no cover - not used
        return {}


def fill(ledger: Ledger, n: int) -> None:
    with ledger.session() as db:
        for i in range(n):
            db.add(SessionRecord(
                id=f"s{i:05d}", user_name=f"user{i % 97}", server_name=f"srv{i}",
                profile="cpu", backend="local", job_id=f"local-{i}", state="running",
                events=[SessionEvent(state="requested"), SessionEvent(state="running")],
            ))  # fmt: skip


def peer_read(ledger: Ledger) -> int:
    with ledger.session() as db:
        return len(list(db.scalars(
            select(SessionRecord).where(SessionRecord.state.not_in(FINAL_STATES)))))  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/ledger.sqlite"
        migrate(url)
        ledger = Ledger(url)
        fill(ledger, args.sessions)
        backend = AllRunning()
        servers = {(f"user{i % 97}", f"srv{i}"): True for i in range(args.sessions)}
        ours, peer = [], []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            result = asyncio.run(reconcile(ledger, backend, servers))
            ours.append(time.perf_counter() - t0)
            assert result.checked == args.sessions and not result.changed
            t0 = time.perf_counter()
            assert peer_read(ledger) == args.sessions
            peer.append(time.perf_counter() - t0)
        with ledger.session() as db:  # every session moves: starting -> running
            for row in db.scalars(select(SessionRecord)):
                row.state = "starting"
        t0 = time.perf_counter()
        moved = asyncio.run(reconcile(ledger, backend, servers))
        all_change_s = time.perf_counter() - t0
        assert len(moved.changed) == args.sessions
        ledger.dispose()
    figures = {
        "round_where_every_session_changes_s": all_change_s,
        "sessions": args.sessions,
        "rounds": args.rounds,
        "reconcile_round_s_median": statistics.median(ours),
        "peer_select_s_median": statistics.median(peer),
        "ratio": statistics.median(ours) / statistics.median(peer),
    }
    out = Path(__file__).with_name("results") / "reconcile.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=2))
    print(
        f"reconcile round, {args.sessions} live sessions: "
        f"{figures['reconcile_round_s_median'] * 1000:.1f} ms (median of {args.rounds})"
    )
    print(f"peer: one SELECT of the same rows:  {figures['peer_select_s_median'] * 1000:.1f} ms")
    print(f"ratio ours/peer: {figures['ratio']:.2f}")
    print(f"a round where all {args.sessions} sessions change state: {all_change_s * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
