"""The portal API's housekeeping: GPU samples compacted and expired every few minutes."""

from __future__ import annotations

import asyncio
import logging

from gpuaf.facility import Facility
from gpuaf.ledger.compaction import compact_samples

log = logging.getLogger("gpuaf.api.housekeeping")

FIRST_RUN_AFTER_S = 60.0  # not in the way of the start
INTERVAL_S = 600.0


async def run_forever(
    facility: Facility, first_after: float = FIRST_RUN_AFTER_S, interval: float = INTERVAL_S
) -> None:
    await asyncio.sleep(first_after)
    while True:
        try:
            result = await asyncio.to_thread(
                compact_samples, facility.ledger, settings=facility.settings.ledger
            )
        except Exception:
            log.exception("compacting GPU samples failed")
        else:
            if result.changed:
                log.info(
                    "GPU samples: %d merged into %d rows in %d sessions; %d deleted of %d "
                    "sessions past their retention",
                    result.samples_merged, result.rows_written, result.sessions_compacted,
                    result.samples_deleted, result.sessions_expired,
                )  # fmt: skip
        await asyncio.sleep(interval)
