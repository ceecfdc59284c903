"""The real portal, started as a user starts it: `gpuaf demo` with a settings file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import yaml

from gpuaf.settings import EXAMPLE

SIMULATION = "2xH100-80GB,H200-141GB[3g.71gb,2g.35gb,2x1g.18gb]"


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def write_settings(
    path: Path, *, ledger_url: str | None, simulate: str | None = SIMULATION, **changes: dict
) -> dict:
    data = yaml.safe_load(EXAMPLE.read_text())
    portal, hub, proxy_api, api, idp = free_ports(5)
    data["portal"].update(
        port=portal,
        hub_port=hub,
        proxy_api_port=proxy_api,
        api_port=api,
        data_dir=str(path.parent / "data"),
    )
    data["iam"]["issuer"] = f"http://127.0.0.1:{idp}"
    data["ledger"]["url"] = ledger_url
    data["backend"]["local"]["simulate_gpus"] = simulate
    data["sessions"]["start_timeout"] = "90s"
    for section, values in changes.items():
        if isinstance(values, list):
            data[section] = values
        else:
            data.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(data))
    return data


@dataclass
class Stack:
    url: str
    settings_path: Path
    data_dir: Path
    proc: subprocess.Popen
    log: Path

    @property
    def api(self) -> str:
        return f"{self.url}services/portal/api/v1"

    def log_tail(self, lines: int = 40) -> str:
        texts = []
        for path in [self.log, *sorted((self.data_dir / "logs").glob("*.log"))]:
            if path.exists():
                texts.append(
                    f"--- {path.name}\n"
                    + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
                )
        return "\n".join(texts)

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def interrupt(self, timeout: float = 60) -> int:
        """Ctrl-C as a terminal sends it: SIGINT to the demo's whole process group."""
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(timeout=timeout)


def start_stack(
    base: Path,
    *,
    ledger_url: str | None = None,
    simulate: str | None = SIMULATION,
    env: dict[str, str] | None = None,
    **changes: dict,
) -> Stack:
    base.mkdir(parents=True, exist_ok=True)
    settings_path = base / "settings.yaml"
    data = write_settings(settings_path, ledger_url=ledger_url, simulate=simulate, **changes)
    log = base / "demo.out"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gpuaf", "demo", "--settings", str(settings_path)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    stack = Stack(
        f"http://127.0.0.1:{data['portal']['port']}/",
        settings_path,
        Path(data["portal"]["data_dir"]),
        proc,
        log,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gpuaf demo exited with {proc.returncode}\n{stack.log_tail()}")
        try:
            if (
                "gpuaf demo is running" in log.read_text(errors="replace")
                and httpx.get(f"{stack.api}/health", timeout=2).status_code == 200
            ):
                return stack
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stack.interrupt()
    raise RuntimeError(f"gpuaf demo did not come up\n{stack.log_tail()}")


def wait_until(predicate, timeout: float, what: str, stack: Stack):
    """Poll ``predicate`` until it returns something true; fail with the stack's logs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what} did not happen within {timeout} s\n{stack.log_tail()}")


def wait_ready(stack: Stack, user: str, auth: dict[str, str], timeout: float = 60) -> None:
    """Wait until the hub says the user's default server is ready."""

    def ready() -> bool:
        model = httpx.get(f"{stack.url}hub/api/users/{user}", headers=auth).json()
        return bool(model["servers"].get("", {}).get("ready"))

    wait_until(ready, timeout, f"{user}'s server start", stack)


def start_server(
    stack: Stack, user: str, auth: dict[str, str], profile: str, timeout: float = 60
) -> None:
    """Book ``profile`` for ``user`` through the hub's REST API and wait until it is ready."""
    reply = httpx.post(
        f"{stack.url}hub/api/users/{user}/server",
        json={"profile": profile},
        headers=auth,
        timeout=60,
    )
    assert reply.status_code in (201, 202), reply.text
    wait_ready(stack, user, auth, timeout=timeout)
