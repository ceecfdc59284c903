"""The portal's parts started one by one, as a site runs them, so a test can kill one.

``start_parts()`` starts the demo OIDC provider and ``gpuaf hub`` as two separate
processes (the hub starts the proxy and the portal API itself). ``Parts.kill_hub()``
sends SIGKILL to the hub alone — no cleanup runs — and ``Parts.start_hub()`` starts a new
hub on the same data directory, as systemd or Kubernetes would after a crash.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from gpuaf.demo.supervisor import IDP_SCRIPT, find_node_modules, idp_environment
from gpuaf.settings import ENV_VAR, load_settings
from support.stack import write_settings


@dataclass
class Parts:
    url: str
    settings_path: Path
    data_dir: Path
    env: dict[str, str]
    idp: subprocess.Popen
    hub: subprocess.Popen | None = None
    hubs_started: int = 0
    kind: str = "local"  # the backend
    logs: list[Path] = field(default_factory=list)

    @property
    def api(self) -> str:
        return f"{self.url}services/portal/api/v1"

    def start_hub(self, timeout: float = 90) -> None:
        self.hubs_started += 1
        log = self.data_dir.parent / f"hub-{self.hubs_started}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            self.hub = subprocess.Popen(
                [sys.executable, "-m", "gpuaf", "hub", "--settings", str(self.settings_path)],
                env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.hub.poll() is not None:
                raise RuntimeError(f"the hub exited ({self.hub.returncode})\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.api}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the hub did not come up\n{self.log_tail()}")

    def api_process(self) -> psutil.Process | None:
        """The portal API the hub started (its child running `gpuaf api`)."""
        return self.service_process(lambda cmdline: cmdline[3:4] == ["api"])

    def culler_process(self) -> psutil.Process | None:
        return self.service_process(lambda cmdline: "jupyterhub_idle_culler" in cmdline)

    def service_process(self, match) -> psutil.Process | None:
        try:
            children = psutil.Process(self.hub.pid).children()
        except psutil.NoSuchProcess:
            return None
        for child in children:
            try:
                if child.status() != psutil.STATUS_ZOMBIE and match(child.cmdline()):
                    return child
            except psutil.Error:
                continue
        return None

    def kill_hub(self) -> None:
        """SIGKILL to the hub process only: nothing it would do on a clean stop happens."""
        os.kill(self.hub.pid, signal.SIGKILL)
        self.hub.wait(timeout=10)

    def log_tail(self, lines: int = 60) -> str:
        texts = []
        for path in [*self.logs, *sorted((self.data_dir / "logs").glob("*.log"))]:
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                texts.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(texts)

    def stop(self) -> None:
        """The hub (which stops sessions, proxy and API), then the provider, then leftovers."""
        family = []
        for proc in (self.hub, self.idp):
            if proc is None:
                continue
            with contextlib.suppress(psutil.NoSuchProcess):
                family += psutil.Process(proc.pid).children(recursive=True)
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        for p in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()


def start_parts(base: Path, *, ledger_url: str | None = None, **changes: dict) -> Parts:
    base.mkdir(parents=True, exist_ok=True)
    settings_path = base / "settings.yaml"
    data = write_settings(settings_path, ledger_url=ledger_url, **changes)
    settings = load_settings(settings_path)
    modules = find_node_modules()
    assert modules is not None, "npm ci first: the demo provider needs oidc-provider"
    env = {
        **os.environ,
        ENV_VAR: str(settings_path),
        "GPUAF_NODE_MODULES": str(modules),
        "GPUAF_PROXY_COMMAND": str(modules / ".bin" / "configurable-http-proxy"),
    }
    with (base / "idp.log").open("wb") as out:
        idp = subprocess.Popen(
            ["node", str(IDP_SCRIPT)],
            env={**env, **idp_environment(settings)},
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    parts = Parts(
        f"http://127.0.0.1:{data['portal']['port']}/",
        settings_path,
        Path(data["portal"]["data_dir"]),
        env,
        idp,
        logs=[base / "idp.log"],
    )
    issuer = settings.iam.issuer.rstrip("/")
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=2).is_success:
                break
        except httpx.HTTPError:
            if time.monotonic() > deadline or idp.poll() is not None:
                parts.stop()
                raise RuntimeError(f"the demo provider did not start\n{parts.log_tail()}") from None
            time.sleep(0.2)
    try:
        parts.start_hub()
    except BaseException:
        parts.stop()
        raise
    return parts
