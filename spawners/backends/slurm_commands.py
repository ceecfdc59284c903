"""Running Slurm's commands: argument lists, a minimal environment, errors for people.

Commands come from ``bin_dir`` or PATH and run with ``asyncio.create_subprocess_exec``,
never through a shell. Their environment is PATH and SLURM_CONF (the hub's, or the one
given) and nothing else of the hub; sbatch gets SLURM_CONF alone, because the job
inherits sbatch's environment (``--export=ALL``).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path
from typing import NamedTuple

from gpuaf.errors import BackendError
from gpuaf.profiles import SliceProfile


class CommandResult(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


class SlurmCommands:
    def __init__(
        self, bin_dir: Path | None = None, slurm_conf: Path | None = None, timeout: float = 30
    ):
        self.bin_dir = Path(bin_dir) if bin_dir else None
        self.slurm_conf = slurm_conf  # default: $SLURM_CONF of the hub, read at each call
        self.timeout = timeout

    def environment(self, program: str = "squeue") -> dict[str, str]:
        """PATH and SLURM_CONF; for sbatch, whose environment becomes the job's, SLURM_CONF."""
        env = {} if program == "sbatch" else {"PATH": os.environ.get("PATH") or os.defpath}
        conf = self.slurm_conf or os.environ.get("SLURM_CONF")
        if conf:
            env["SLURM_CONF"] = str(conf)
        return env

    def program(self, name: str) -> str:
        if self.bin_dir:
            return str(self.bin_dir / name)
        return shutil.which(name, path=self.environment()["PATH"]) or name

    async def run(self, argv: list[str], stdin: bytes | None = None) -> CommandResult:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self.environment(Path(argv[0]).name),
            )
        except OSError as exc:
            raise BackendError(
                "The portal cannot run the batch system's commands; tell the facility admins.",
                log_message=f"{argv[0]}: {exc} (set backend.slurm.bin_dir?)",
            ) from exc
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), self.timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise BackendError(
                "The batch system did not answer in time; try again in a minute.",
                status=504,
                log_message=f"{argv[0]} ran longer than {self.timeout} s",
            ) from None
        text = (out.decode(errors="replace"), err.decode(errors="replace"))
        return CommandResult(proc.returncode or 0, *text)


def last_error(result: CommandResult) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()] or ["no message"]
    return re.sub(r"^\w+: (error|fatal): ", "", lines[-1]).strip()[:300]


def refusal(profile: SliceProfile, result: CommandResult) -> BackendError:
    """sbatch said no: why, in words for the user."""
    detail = last_error(result)
    if re.search(r"node configuration is not available|Invalid generic resource", detail):
        return BackendError(
            f"No node of the cluster can run a {profile.display_name} slice ({detail}).",
            status=409,
            log_message=f"sbatch refused: {result.stderr.strip()}",
        )
    return BackendError(
        f"The batch system refused the job: {detail}",
        log_message=f"sbatch exited {result.returncode}: {result.stderr.strip()}",
    )


def unreachable(command: str, result: CommandResult) -> BackendError:
    return BackendError(
        "The batch system does not answer right now; try again in a minute.",
        status=503,
        log_message=f"{command} exited {result.returncode}: {result.stderr.strip()}",
    )
