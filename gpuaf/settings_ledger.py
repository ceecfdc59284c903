"""Settings of the ledger: its database and how long GPU samples are kept."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from gpuaf.settings_base import Duration, Strict


class LedgerSettings(Strict):
    url: str | None = Field(
        None,
        description="SQLAlchemy URL of the ledger; default: SQLite in the data directory.",
    )
    password_file: Path | None = Field(
        None,
        description="File holding the password of the ledger's database user (e.g. a mounted "
        "Kubernetes Secret), read when connecting; keeps the password out of the url.",
    )
    samples_full_resolution_for: Duration = Field(
        86400,
        description="GPU samples younger than this are kept as the session agent sent them "
        "(at least 1 h).",
    )
    samples_bucket: Duration = Field(
        300,
        description="Older samples are merged into one row per session, device and bucket "
        "of this length (1 min to 1 d, at most samples_full_resolution_for); per-session "
        "peak memory and NVML energy stay exact.",
    )
    samples_keep_for: Duration | None = Field(
        400 * 86400,
        description="Samples of sessions that ended longer ago than this are deleted; their "
        "peak memory and energy stay on the session (at least 1 d and at least "
        "samples_full_resolution_for); empty: keep them forever.",
    )

    @model_validator(mode="after")
    def _sample_durations(self) -> LedgerSettings:
        from gpuaf.units import format_duration as text

        full, bucket, keep = (
            self.samples_full_resolution_for,
            self.samples_bucket,
            self.samples_keep_for,
        )
        for key, value, low, high in (
            ("samples_full_resolution_for", full, 3600, None),
            ("samples_bucket", bucket, 60, 86400),
            ("samples_keep_for", keep, 86400, None),
        ):
            if value is not None and (value < low or (high is not None and value > high)):
                allowed = f"{text(low)} to {text(high)}" if high else f"at least {text(low)}"
                raise ValueError(f"{key} must be {allowed} (got {text(value)})")
        if bucket > full:
            raise ValueError(
                f"samples_bucket ({text(bucket)}) must not be longer than "
                f"samples_full_resolution_for ({text(full)})"
            )
        if keep is not None and keep < full:
            raise ValueError(
                f"samples_keep_for ({text(keep)}) must not be shorter than "
                f"samples_full_resolution_for ({text(full)})"
            )
        if self.password_file is not None:
            from sqlalchemy.engine import make_url
            from sqlalchemy.exc import ArgumentError

            try:
                url = make_url(self.url) if self.url else None
            except ArgumentError as exc:
                raise ValueError(f"url is not a database URL: {exc}") from exc
            if url is None or url.get_backend_name() == "sqlite":
                raise ValueError("password_file needs a url of a database server (not SQLite)")
            if url.password is not None:
                raise ValueError("set a password in url or password_file, not both")
        return self
