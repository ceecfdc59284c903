"""A real Slurm on this machine, in a scratch directory, with fake GPU device files.

``start_slurm()`` starts munged (as the munge user, with its own key and socket),
slurmctld and slurmd (as root) for a one-node cluster named after the short hostname,
on free loopback ports, with state, logs and spool under the scratch directory, and
waits until the node is idle. The node offers ``gpu`` devices (character devices made
with mknod) and either ``shard`` or ``mps`` GRES on them, optionally also MIG-typed
``gpu`` GRES. ``LocalSlurm.stop()`` cancels every job, then ends every daemon it started
and every slurmstepd they left. Use ``.env`` to run Slurm commands against it.

``slurm_unavailable()`` says why none can start here (not installed, not root);
``require_slurm()`` skips the calling test with that reason, or fails it when
``GPUAF_REQUIRE_SLURM=1``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

DAEMONS = ("munged", "slurmctld", "slurmd")
# Slurm wants all gpu GRES of a node typed once one is: whole GPUs get this type with MIG
WHOLE_GPU_TYPE = "h100"


def _binary(name: str) -> str | None:
    for folder in (None, "/usr/sbin", "/usr/bin"):
        found = shutil.which(name, path=folder)
        if found:
            return found
    return None


def slurm_unavailable() -> str | None:
    """Why a scratch Slurm cannot run here, or None when it can."""
    missing = [n for n in ("sbatch", "squeue", "scontrol", *DAEMONS) if _binary(n) is None]
    if missing:
        return f"Slurm is not installed (no {', '.join(missing)}); apt-get install slurm-wlm munge"
    if os.geteuid() != 0:
        return "a scratch Slurm needs root (munged runs as the munge user, mknod for fake GPUs)"
    try:
        import pwd

        pwd.getpwnam("munge")
    except KeyError:
        return "the munge user does not exist; apt-get install munge"
    return None


def require_slurm() -> None:
    """Skip the calling test when no Slurm can start; fail instead if GPUAF_REQUIRE_SLURM=1."""
    import pytest

    reason = slurm_unavailable()
    if reason is None:
        return
    if os.environ.get("GPUAF_REQUIRE_SLURM") == "1":
        pytest.fail(f"Slurm is required ($GPUAF_REQUIRE_SLURM=1): {reason}")
    pytest.skip(reason)


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@dataclass
class LocalSlurm:
    base: Path
    conf: Path
    node: str
    gres: str  # "shard" or "mps"
    gpus: int
    shards_per_gpu: int
    mig: dict[str, int]
    bin_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen] = field(default_factory=list)
    remove_base: bool = False  # the scratch folder was made here: stop() removes it

    def run(self, *args: str, check: bool = True, timeout: float = 30) -> str:
        """Run a Slurm command (e.g. ``run("squeue", "-h")``) against this cluster."""
        result = subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result.stdout

    def backend_settings(self) -> dict:
        """The ``backend`` section of a settings file for this cluster (the hub also needs
        ``SLURM_CONF=<.conf>`` in its environment)."""
        slurm = {"bin_dir": str(self.bin_dir), "mps_gres": self.gres}
        slurm["shards_per_gpu"] = self.shards_per_gpu
        return {"kind": "slurm", "slurm": slurm}

    def logs(self) -> str:
        texts = []
        for path in sorted(self.base.glob("**/*.log")):
            lines = path.read_text(errors="replace").splitlines()[-30:]
            texts.append(f"--- {path.name}\n" + "\n".join(lines))
        return "\n".join(texts)

    def wait_idle(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{proc.args[0]} exited ({proc.returncode})\n{self.logs()}")
            with contextlib.suppress(subprocess.TimeoutExpired):
                state = self.run("sinfo", "-h", "-o", "%T", check=False, timeout=10).strip()
            if state == "idle":
                return
            time.sleep(0.2)
        raise RuntimeError(f"the Slurm node is {state or 'not answering'}\n{self.logs()}")

    def cancel_all(self, timeout: float = 20) -> None:
        """Cancel every job and wait until none runs (squeue may still list finished ones)."""
        self.run("scancel", "--user=root", check=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = self.run("squeue", "-h", "-o", "%T", "--states=all", check=False).split()
            if not set(states) & {"PENDING", "RUNNING", "COMPLETING", "CONFIGURING"}:
                return
            time.sleep(0.2)

    def stop(self) -> None:
        """Cancel all jobs, then end every daemon this cluster started and what they left."""
        if any(p.poll() is None for p in self.procs):
            with contextlib.suppress(Exception):
                self.cancel_all()
            deadline = time.monotonic() + 10  # let slurmstepd finish its clean-up
            while self.leftovers() and time.monotonic() < deadline:
                time.sleep(0.1)
        for proc in reversed(self.procs):  # slurmd, slurmctld, then munged
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        for proc in self.leftovers():
            with contextlib.suppress(psutil.Error):
                proc.kill()
        if self.remove_base:
            shutil.rmtree(self.base, ignore_errors=True)

    def leftovers(self) -> list[psutil.Process]:
        """slurmstepd processes of this cluster (they run in its folder) and their jobs."""
        daemons = set()
        for daemon in self.procs:  # and their helpers (slurmscriptd)
            with contextlib.suppress(psutil.Error):
                top = psutil.Process(daemon.pid)
                daemons |= {p.pid for p in (top, *top.children(recursive=True))}
        found: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if proc.pid not in daemons and proc.cwd() == str(self.base):
                    for p in (proc, *proc.children(recursive=True)):
                        found[p.pid] = p
        return list(found.values())


def _write_munge(base: Path) -> tuple[Path, list[str]]:
    munge = base / "munge"
    munge.mkdir()
    key = munge / "munge.key"
    key.write_bytes(os.urandom(128))
    for path in (munge, key):
        shutil.chown(path, "munge", "munge")
    munge.chmod(0o711)
    key.chmod(0o400)
    socket_path = munge / "munge.socket.2"
    argv = [
        _binary("munged") or "munged",
        "--foreground",
        f"--key-file={key}",
        f"--socket={socket_path}",
        f"--pid-file={munge / 'munged.pid'}",
        f"--log-file={munge / 'munged.log'}",
        f"--seed-file={munge / 'munged.seed'}",
    ]
    return socket_path, argv


def _gres_lines(node: str, dev: Path, gres: str, gpus: int, per_gpu: int, mig: dict) -> list[str]:
    typed = f" Type={WHOLE_GPU_TYPE}" if mig else ""
    lines = [f"NodeName={node} Name=gpu{typed} File={dev / f'nvidia{i}'}" for i in range(gpus)]
    count = per_gpu if gres == "shard" else 100
    lines += [
        f"NodeName={node} Name={gres} Count={count} File={dev / f'nvidia{i}'}" for i in range(gpus)
    ]
    index = gpus
    for profile, n in mig.items():
        for _ in range(n):
            lines.append(f"NodeName={node} Name=gpu Type={profile} File={dev / f'nvidia{index}'}")
            index += 1
    return lines


def start_slurm(
    base: Path | None = None,
    *,
    gres: str = "shard",
    gpus: int = 2,
    shards_per_gpu: int = 4,
    mig: dict[str, int] | None = None,
    cpus: int = 8,
    memory_mib: int = 8000,
) -> LocalSlurm:
    """Start a one-node Slurm with ``gpus`` fake GPUs cut into ``shard`` or ``mps`` GRES.

    ``mig`` adds MIG-typed gpu GRES, e.g. ``{"1g.18gb": 2}`` (Type named after the profile);
    the whole GPUs are then typed ``h100``, as Slurm refuses a mix of typed and untyped.
    CPUs and memory are taken from the configuration, not the machine (config_overrides).
    """
    if gres not in ("shard", "mps"):
        raise ValueError("gres is shard or mps (Slurm misbehaves with both on one node)")
    mig = dict(mig or {})
    # short path: unix sockets of slurmstepd live under the spool dir (108 bytes at most)
    remove_base = base is None
    base = Path(base or tempfile.mkdtemp(prefix="gpuaf-slurm-")).resolve()
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)  # munged (as munge) must reach its folder
    node = socket.gethostname().split(".")[0]
    slurm = base / "slurm"
    dev = slurm / "dev"
    for folder in (slurm / "state", slurm / "spool", dev):
        folder.mkdir(parents=True)
    for i in range(gpus + sum(mig.values())):
        os.mknod(dev / f"nvidia{i}", 0o666 | 0o020000, os.makedev(1, 3))  # like /dev/null
    munge_socket, munged = _write_munge(base)
    ctld_port, slurmd_port = _free_ports(2)
    count = shards_per_gpu if gres == "shard" else 100
    whole = f"gpu:{WHOLE_GPU_TYPE}:{gpus}" if mig else f"gpu:{gpus}"
    node_gres = [whole, f"{gres}:{count * gpus}"]
    node_gres += [f"gpu:{profile}:{n}" for profile, n in mig.items()]
    conf = slurm / "slurm.conf"
    conf.write_text(
        "\n".join(
            [
                "ClusterName=gpuaftest",
                f"GresTypes=gpu,{gres}",
                f"SlurmctldHost={node}(127.0.0.1)",
                "SlurmUser=root",
                "SlurmdUser=root",
                "AuthType=auth/munge",
                "CredType=cred/munge",
                f"AuthInfo=socket={munge_socket}",
                "CommunicationParameters=NoInAddrAny,NoCtldInAddrAny",
                f"SlurmctldPort={ctld_port}",
                f"SlurmdPort={slurmd_port}",
                f"StateSaveLocation={slurm / 'state'}",
                f"SlurmdSpoolDir={slurm / 'spool'}",
                f"SlurmctldPidFile={slurm / 'slurmctld.pid'}",
                f"SlurmdPidFile={slurm / 'slurmd.pid'}",
                f"SlurmctldLogFile={slurm / 'slurmctld.log'}",
                f"SlurmdLogFile={slurm / 'slurmd.log'}",
                "SlurmdParameters=config_overrides",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "JobAcctGatherType=jobacct_gather/none",
                "AccountingStorageType=accounting_storage/none",
                "JobCompType=jobcomp/none",
                "MpiDefault=none",
                "MailProg=/bin/true",
                "SchedulerType=sched/backfill",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core_Memory",
                "ReturnToService=2",
                "SchedulerParameters=bf_interval=1,sched_interval=1",
                f"NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mib} "
                f"Gres={','.join(node_gres)} State=UNKNOWN",
                "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
                "",
            ]
        )
    )
    (slurm / "gres.conf").write_text(
        "\n".join(_gres_lines(node, dev, gres, gpus, shards_per_gpu, mig)) + "\n"
    )
    bin_dir = Path(_binary("sbatch") or "/usr/bin/sbatch").parent
    path = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    env = {"PATH": path, "SLURM_CONF": str(conf)}
    cluster = LocalSlurm(base, conf, node, gres, gpus, shards_per_gpu, mig, bin_dir, env)
    cluster.remove_base = remove_base
    daemon_env = dict(env)
    log = (base / "daemons.out").open("ab")
    try:
        cluster.procs.append(
            subprocess.Popen(
                munged, env=daemon_env, user="munge", group="munge", stdout=log, stderr=log
            )
        )
        _wait_for(lambda: munge_socket.exists(), cluster, "munged's socket")
        for name in ("slurmctld", "slurmd"):
            argv = [_binary(name) or name, "-D", "-f", str(conf)]
            cluster.procs.append(
                subprocess.Popen(argv, env=daemon_env, stdout=log, stderr=log, cwd=base)
            )
        cluster.wait_idle()
    except BaseException:
        cluster.stop()
        raise
    finally:
        log.close()
    return cluster


def _wait_for(check, cluster: LocalSlurm, what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        for proc in cluster.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args[0]} exited ({proc.returncode})\n{cluster.logs()}")
        time.sleep(0.05)
    raise RuntimeError(f"no {what} after {timeout} s\n{cluster.logs()}")
