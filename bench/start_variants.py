"""The three portals of bench_start.py, each started, measured and stopped the same way.

``gpuaf_portal`` runs the real portal as the end-to-end tests do (``gpuaf demo`` with a
settings file, tests/support/stack.py), on the ``local`` backend with simulated GPUs or
on a scratch Slurm. ``stock_portal`` runs a plain JupyterHub with batchspawner's
``SlurmSpawner`` on its defaults, configured by a file written here. Both give a
:class:`Portal`: where to POST a start, whom to ask whether the server is usable, and
how to tell that a stopped server is gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import yaml
from support.login import hub_token, login
from support.slurm import LocalSlurm
from support.stack import free_ports, start_stack

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
SLURM_JOB_PATH = f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin"
# one slice for every variant: a whole (fake) GPU, 1 CPU, 512 MiB, 1 h (the scratch
# Slurm node has 8 CPUs and 8000 MiB); batchspawner asks Slurm for exactly the same
SLICE = {"cpus": 1, "memory": "512M", "walltime": "1h"}
PROFILES = [{"name": "gpu-1", "display_name": "1 GPU", "kind": "gpu", "gpus": 1, **SLICE}]
STOCK_REQUEST = {
    "req_nprocs": "1",
    "req_memory": "512M",
    "req_runtime": "1:00:00",
    "req_gres": "gpu:1",
}
ACTIVE_JOB_STATES = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING"}


@dataclass
class Portal:
    name: str
    url: str  # the proxy, ending in /
    user: str
    auth: dict[str, str]
    hub_port: int
    body: dict | None = None  # the start request's JSON
    slurm: LocalSlurm | None = None
    log_tail: Callable[[], str] = lambda: ""
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=120))
    job_ids: list[str] = field(default_factory=list)  # Slurm jobs it ran

    def server_processes(self) -> list[psutil.Process]:
        """Single-user servers that talk to this portal's hub."""
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error):
                if any("jupyterhub-singleuser" in a for a in proc.info["cmdline"] or []):
                    api = proc.environ().get("JUPYTERHUB_API_URL", "")
                    if f":{self.hub_port}/" in api:
                        found.append(proc)
        return found

    def active_jobs(self) -> list[str]:
        if self.slurm is None:
            return []
        states = self.slurm.run("squeue", "-h", "-o", "%T", "--states=all", check=False)
        return [s for s in states.split() if s in ACTIVE_JOB_STATES]

    def has_server(self) -> bool:
        reply = self.http.get(f"{self.url}hub/api/users/{self.user}", headers=self.auth)
        reply.raise_for_status()
        return "" in reply.json().get("servers", {})

    def usable(self) -> bool:
        """An authenticated GET of the server's /api/status through the proxy answers."""
        try:
            reply = self.http.get(f"{self.url}user/{self.user}/api/status", headers=self.auth)
            return reply.status_code == 200 and "started" in reply.json()
        except (httpx.HTTPError, ValueError):
            return False

    def time_start(self, timeout: float = 180, poll: float = 0.1) -> float:
        """Seconds from the start request to a usable server."""
        t0 = time.perf_counter()
        reply = self.http.post(
            f"{self.url}hub/api/users/{self.user}/server", json=self.body, headers=self.auth
        )
        if reply.status_code not in (201, 202):
            raise RuntimeError(f"{self.name}: start refused ({reply.status_code}): {reply.text}")
        while not self.usable():
            if time.perf_counter() - t0 > timeout:
                self.note_jobs()
                raise RuntimeError(f"{self.name}: no server after {timeout} s\n{self.log_tail()}")
            time.sleep(poll)
        seconds = time.perf_counter() - t0
        self.note_jobs()
        return seconds

    def note_jobs(self) -> None:
        if self.slurm is not None:
            jobs = self.slurm.run("squeue", "-h", "-o", "%i", check=False).split()
            self.job_ids += [j for j in jobs if j not in self.job_ids]

    def stop(self, timeout: float = 90) -> None:
        """Stop the server and wait until the hub, the process table and Slurm forget it."""
        self.note_jobs()
        url = f"{self.url}hub/api/users/{self.user}/server"
        reply = self.http.delete(url, headers=self.auth)
        if reply.status_code not in (202, 204):
            raise RuntimeError(f"{self.name}: stop refused ({reply.status_code}): {reply.text}")
        deadline = time.monotonic() + timeout
        while self.has_server() or self.server_processes() or self.active_jobs():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: server still there\n{self.log_tail()}")
            time.sleep(0.2)


def gpuaf_portal(base: Path, slurm: LocalSlurm | None, cleanup: contextlib.ExitStack) -> Portal:
    """gpuaf as tests/support/stack.py starts it: local backend (simulated GPUs) or Slurm."""
    if slurm is None:
        stack = start_stack(base, profiles=PROFILES)
    else:  # as tests/test_e2e_slurm.py configures it
        stack = start_stack(
            base,
            simulate=None,
            backend={
                "kind": "slurm",
                "slurm": {**slurm.backend_settings()["slurm"], "conf": str(slurm.conf)},
            },
            sessions={
                "singleuser_cmd": ["jupyterhub-singleuser", "--allow-root"],
                "environment": {"PATH": SLURM_JOB_PATH},
            },
            profiles=PROFILES,
        )
    cleanup.callback(_interrupt, stack)
    client = login(stack.url, "alice")
    token = hub_token(client, "alice")
    client.close()
    hub_port = yaml.safe_load(stack.settings_path.read_text())["portal"]["hub_port"]
    name = "local-gpuaf" if slurm is None else "slurm-gpuaf"
    auth = {"Authorization": f"token {token}"}
    portal = Portal(name, stack.url, "alice", auth, hub_port, {"profile": "gpu-1"}, slurm)
    portal.log_tail = stack.log_tail
    cleanup.callback(portal.http.close)
    return portal


def _interrupt(stack) -> None:
    try:
        stack.interrupt()
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(stack.proc.pid, signal.SIGKILL)


def stock_config(base: Path, slurm: LocalSlurm, token: str, ports: list[int]) -> str:
    """A minimal jupyterhub_config.py for batchspawner's SlurmSpawner on its defaults."""
    proxy, hub, proxy_api = ports
    settings = {
        "JupyterHub.bind_url": f"http://127.0.0.1:{proxy}/",
        "JupyterHub.hub_ip": "127.0.0.1",
        "JupyterHub.hub_port": hub,
        "JupyterHub.db_url": f"sqlite:///{base / 'jupyterhub.sqlite'}",
        "JupyterHub.cookie_secret_file": str(base / "jupyterhub_cookie_secret"),
        "JupyterHub.authenticator_class": "dummy",
        "JupyterHub.spawner_class": "batchspawner.SlurmSpawner",
        "JupyterHub.services": [{"name": "bench", "api_token": token}],
        "JupyterHub.load_roles": [
            {
                "name": "bench",
                "scopes": ["admin:users", "admin:servers", "access:servers"],
                "services": ["bench"],
            }
        ],
        "ConfigurableHTTPProxy.api_url": f"http://127.0.0.1:{proxy_api}",
        "ConfigurableHTTPProxy.command": [str(ROOT / "node_modules/.bin/configurable-http-proxy")],
        "ConfigurableHTTPProxy.pid_file": str(base / "proxy.pid"),
        # we are root and the hub user is root: no sudo in front of sbatch/squeue/scancel
        "SlurmSpawner.exec_prefix": "",
        "Spawner.args": ["--allow-root"],
        "Spawner.default_url": "/lab",
        "Spawner.environment": {"PATH": SLURM_JOB_PATH, "SLURM_CONF": str(slurm.conf)},
        **{f"SlurmSpawner.{k}": v for k, v in STOCK_REQUEST.items()},
    }
    lines = ["c = get_config()  # noqa"]
    for key, value in settings.items():
        section, name = key.split(".")
        lines.append(f"c.{section}.{name} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def stock_portal(base: Path, slurm: LocalSlurm, cleanup: contextlib.ExitStack) -> Portal:
    """A plain JupyterHub with batchspawner.SlurmSpawner on the same scratch Slurm."""
    base.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(32)
    ports = free_ports(3)
    config = base / "jupyterhub_config.py"
    config.write_text(stock_config(base, slurm, token, ports))
    log = base / "hub.out"
    # the job works in and logs to the hub user's home (req_homedir is not configurable)
    home = Path(pwd.getpwnam("root").pw_dir)

    def log_tail(lines: int = 40) -> str:
        texts = [log, *(home / f"jupyterhub_slurmspawner_{j}.log" for j in portal.job_ids[-1:])]
        return "\n".join(
            f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-lines:])
            for p in texts
            if p.exists()
        )

    url = f"http://127.0.0.1:{ports[0]}/"
    auth = {"Authorization": f"token {token}"}
    portal = Portal("slurm-stock", url, "root", auth, ports[1], None, slurm, log_tail)
    cleanup.callback(_remove_job_logs, home, portal.job_ids)
    cleanup.callback(portal.http.close)
    env = {**os.environ, "PATH": SLURM_JOB_PATH, "SLURM_CONF": str(slurm.conf)}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(VENV_BIN / "jupyterhub"), "-f", str(config)],
            cwd=base,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    cleanup.callback(_stop_hub, proc, base / "proxy.pid")
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyterhub exited with {proc.returncode}\n{log_tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if portal.http.get(f"{url}hub/api/", timeout=2).status_code == 200:
                break
        if time.monotonic() > deadline:
            raise RuntimeError(f"jupyterhub did not come up\n{log_tail()}")
        time.sleep(0.3)
    made = portal.http.post(f"{url}hub/api/users/root", headers=auth)
    if made.status_code not in (201, 409):
        raise RuntimeError(f"cannot create the hub user root: {made.text}")
    return portal


def _remove_job_logs(home: Path, job_ids: list[str]) -> None:
    for job in job_ids:
        (home / f"jupyterhub_slurmspawner_{job}.log").unlink(missing_ok=True)


def _stop_hub(proc: subprocess.Popen, proxy_pid: Path) -> None:
    """SIGTERM: the hub stops its servers (scancel) and its proxy; SIGKILL if it hangs."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    with contextlib.suppress(OSError, ValueError, psutil.Error):
        chp = psutil.Process(int(proxy_pid.read_text()))
        if "configurable-http-proxy" in " ".join(chp.cmdline()):
            chp.kill()
