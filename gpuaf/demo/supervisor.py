"""Start the demo OIDC provider and the hub, watch them, and stop every process on exit.

Ctrl-C (SIGINT) or SIGTERM stops the hub first (it stops the sessions and the proxy
itself), then the provider, then anything the demo started that is still alive.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import psutil

from gpuaf.errors import PublicError
from gpuaf.settings import ENV_VAR, Settings

IDP_SCRIPT = Path(__file__).with_name("idp.mjs")
NODE_MODULES_ENV = "GPUAF_NODE_MODULES"
DEMO_PASSWORD_NOTE = "any password (demo provider)"  # noqa: S105 - a note, not a secret
DEMO_USERS = {
    "alice": {"name": "Alice Adams", "email": "alice@demo.invalid", "groups": ["higgs"]},
    "bob": {"name": "Bob Brown", "email": "bob@demo.invalid", "groups": ["neutrino"]},
    "carol": {"name": "Carol Chen", "email": "carol@demo.invalid", "groups": ["higgs", "neutrino"]},
    "dana": {
        "name": "Dana Diaz",
        "email": "dana@demo.invalid",
        "groups": ["higgs", "higgs-admins"],
    },
    "erin": {"name": "Erin Evans", "email": "erin@demo.invalid", "groups": ["facility-admins"]},
}


def find_node_modules() -> Path | None:
    if os.environ.get(NODE_MODULES_ENV):
        return Path(os.environ[NODE_MODULES_ENV])
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (base / "node_modules" / "oidc-provider").is_dir():
            return base / "node_modules"
    return None


def idp_environment(settings: Settings, users: dict = DEMO_USERS) -> dict[str, str]:
    portal = settings.portal.url
    client = {
        "client_id": settings.iam.client_id,
        "client_secret": settings.iam.client_secret.get_secret_value(),
        "redirect_uris": [f"{portal}hub/oauth_callback"],
        "post_logout_redirect_uris": [f"{portal}hub/login", portal],
        "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
        "response_types": ["code"],
    }
    return {
        "IDP_JWT_AUDIENCE": settings.iam.audience,  # access tokens are JWTs for the API
        "IDP_ISSUER": settings.iam.issuer,
        "IDP_CLIENTS": json.dumps([client]),
        "IDP_USERS": json.dumps(users),
    }


def wait_http(url: str, proc: subprocess.Popen, what: str, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PublicError(
                f"The {what} exited during start (code {proc.returncode}):\n"
                f"{_tail(log)}\n(full log: {log})"
            )
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise PublicError(f"The {what} did not answer at {url} within {timeout:.0f} s (log: {log}).")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Demo:
    def __init__(self, settings: Settings, settings_path: Path):
        self.settings = settings
        self.settings_path = settings_path
        self.procs: list[subprocess.Popen] = []
        self._stop = False
        self.log_dir = settings.data_dir / "logs"

    def start(self) -> None:
        modules = find_node_modules()
        if modules is None:
            raise PublicError(
                "The demo needs the npm packages (oidc-provider, "
                "configurable-http-proxy): run `npm ci` in the gpuaf checkout, "
                f"or set {NODE_MODULES_ENV}."
            )
        env = {
            **os.environ,
            NODE_MODULES_ENV: str(modules),
            ENV_VAR: str(self.settings_path),
            "GPUAF_PROXY_COMMAND": str(modules / ".bin" / "configurable-http-proxy"),
        }
        issuer = self.settings.iam.issuer.rstrip("/")
        idp = self._spawn(
            "idp", ["node", str(IDP_SCRIPT)], {**env, **idp_environment(self.settings)}
        )
        wait_http(
            f"{issuer}/.well-known/openid-configuration",
            idp,
            "demo OIDC provider",
            20,
            self.log_dir / "idp.log",
        )
        hub = self._spawn(
            "hub",
            [sys.executable, "-m", "gpuaf", "hub", "--settings", str(self.settings_path)],
            env,
        )
        wait_http(f"{self.settings.portal.url}hub/health", hub, "hub", 90, self.log_dir / "hub.log")

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
        """Start a child whose output goes to <data_dir>/logs/<name>.log."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(  # noqa: S603 - our own argument list, no shell
                cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        self.procs.append(proc)
        return proc

    def wait(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        while not self._stop:
            for proc in self.procs:
                if proc.poll() is not None:
                    print(
                        f"gpuaf demo: {proc.args[0]} exited (code {proc.returncode}); "
                        f"stopping everything. Logs: {self.log_dir}",
                        file=sys.stderr,
                    )
                    return 1
            time.sleep(0.5)
        return 0

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._stop = True

    def stop(self) -> None:
        """Stop the hub, then the provider, then every descendant still alive."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        me = psutil.Process()
        family = me.children(recursive=True)
        for proc in self.procs:  # the hub first: it stops sessions and proxy cleanly
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        family += me.children(recursive=True)
        alive = [p for p in family if _running(p)]
        for p in alive:
            p.terminate()
        _gone, alive = psutil.wait_procs(alive, timeout=5)
        for p in alive:
            p.kill()
        psutil.wait_procs(alive, timeout=5)


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def banner(settings: Settings, gpus: str) -> str:
    portal = settings.portal.url
    width = max(len(n) for n in DEMO_USERS)
    users = "\n".join(
        f"    {name:<{width}}  groups: {', '.join(u['groups'])}" for name, u in DEMO_USERS.items()
    )
    return (
        f"\ngpuaf demo is running.\n\n  Open  {portal}\n\n"
        f"  Log in with {settings.iam.login_service} as a demo user, {DEMO_PASSWORD_NOTE}:\n"
        f"{users}\n\n"
        f"  Portal API  {portal}services/{settings.portal.service_name}/api/v1/docs\n"
        f"  Identity    {settings.iam.issuer} (local stand-in for INDIGO IAM)\n"
        f"  GPUs        {gpus}\n  Data        {settings.data_dir}\n"
        f"  Logs        {settings.data_dir / 'logs'}\n\n"
        "  Press Ctrl-C to stop every process the demo started.\n"
    )


def idp_port(settings: Settings) -> tuple[str, int]:
    url = urlparse(settings.iam.issuer)
    return url.hostname or "127.0.0.1", url.port or 80
