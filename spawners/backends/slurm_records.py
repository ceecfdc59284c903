"""The Slurm backend's own small records, in its spool directory.

``jobs/live/<id>.json`` for each job the portal submitted and has not seen end,
``jobs/done/<id>.json`` once it has (state, reason, exit code), ``secrets/`` for the
jobs' secrets files (mode 0600), ``logs/`` for their output. Writes are atomic
(write, then rename), so the hub and the API may share one spool directory. Records
of ended jobs and job logs older than ``keep_done_s`` go when a backend starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import uuid
from collections.abc import Mapping
from pathlib import Path


class JobRecords:
    def __init__(self, spool: Path, keep_done_s: float = 30 * 86400):
        self.spool = Path(spool).resolve()
        for sub in ("jobs/live", "jobs/done", "secrets", "logs"):
            (self.spool / sub).mkdir(parents=True, exist_ok=True)
        self.spool.chmod(0o700)
        self.logs = self.spool / "logs"
        too_old = time.time() - keep_done_s
        for path in [*(self.spool / "jobs" / "done").glob("*.json"), *self.logs.glob("*.out")]:
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < too_old:
                    path.unlink()

    def path(self, job_id: str, where: str = "live") -> Path:
        return self.spool / "jobs" / where / f"{job_id}.json"

    def read(self, job_id: str) -> dict | None:
        for where in ("live", "done"):
            with contextlib.suppress(OSError, ValueError):
                return json.loads(self.path(job_id, where).read_text())
        return None

    def write(self, record: dict, where: str = "live") -> None:
        path = self.path(record["job_id"], where)
        tmp = path.with_suffix(f".{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_text(json.dumps(record))
        tmp.replace(path)

    def update(self, job_id: str, **changes) -> None:
        """Change a live record as it is now on disk (another call may have changed it)."""
        record = self.read(job_id)
        if record is not None and not record.get("final"):
            self.write({**record, **changes})

    def live(self) -> set[str]:
        names = (p.stem for p in (self.spool / "jobs" / "live").glob("*.json"))
        return {n for n in names if re.fullmatch(r"\d{1,12}", n)}

    def finish(self, job_id: str, **outcome) -> None:
        """The job has ended: keep its outcome in jobs/done, remove its secrets."""
        record = self.read(job_id)
        if record is None or record.get("final"):
            return
        self.forget_secrets(record)
        self.write({**record, **outcome}, "done")
        self.path(job_id).unlink(missing_ok=True)

    def new_secrets_path(self) -> Path:
        return self.spool / "secrets" / f"{uuid.uuid4().hex}.json"

    @staticmethod
    def write_secrets(path: Path, secrets: Mapping[str, str]) -> None:
        """JSON in a new file of mode 0600 (created so, never widened)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(dict(secrets), out)

    @staticmethod
    def forget_secrets(record: dict) -> None:
        if record.get("secrets_file"):
            Path(record["secrets_file"]).unlink(missing_ok=True)
