"""Engine, sessions and migrations of the ledger."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import URL, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from gpuaf.errors import SettingsError
from gpuaf.ledger.models import AuditEvent

MIGRATIONS = Path(__file__).with_name("migrations")


def with_password(url: str, password_file: str | os.PathLike[str] | None) -> URL:
    """The URL, with the password from ``password_file`` (ledger.password_file) if given."""
    parsed = make_url(url)
    if password_file is None:
        return parsed
    path = Path(password_file)
    try:
        password = path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise SettingsError(
            f"ledger.password_file: cannot read {path} ({exc.strerror}); it must be a file "
            "holding the password of the ledger's database user, readable by gpuaf"
        ) from exc
    if not password:
        raise SettingsError(f"ledger.password_file: {path} is empty; it must hold the password")
    return parsed.set(password=password)


def make_engine(url: str, password_file: str | os.PathLike[str] | None = None) -> Engine:
    parsed = with_password(url, password_file)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(parsed, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # hub and API write concurrently
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(
    url: str, revision: str = "head", password_file: str | os.PathLike[str] | None = None
) -> None:
    """Bring the ledger's schema to ``revision`` (idempotent)."""
    engine = make_engine(url, password_file)
    try:
        with engine.begin() as conn:
            cfg = alembic_config(url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    finally:
        engine.dispose()


class Ledger:
    """A handle on the ledger database: an engine and a session factory."""

    def __init__(self, url: str, password_file: str | os.PathLike[str] | None = None):
        self.url = url  # never with the password of password_file
        self.engine = make_engine(url, password_file)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed on success, rolled back on any error."""
        with self._sessions.begin() as db:
            yield db

    def audit(
        self, actor: str, action: str, target: str = "", *, client_addr: str = "", **detail: Any
    ) -> None:
        with self.session() as db:
            db.add(
                AuditEvent(
                    actor=actor,
                    action=action,
                    target=target,
                    detail=detail,
                    client_addr=client_addr,
                )
            )

    def dispose(self) -> None:
        self.engine.dispose()
