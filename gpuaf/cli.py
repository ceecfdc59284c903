"""The ``gpuaf`` command: demo, hub, api, migrate, slices, submit, jobs, node."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

import yaml

from gpuaf import __version__, cli_jobs, cli_slices, cli_submit
from gpuaf.errors import PublicError, SettingsError
from gpuaf.settings import ENV_VAR, EXAMPLE, Settings, load_settings

DEFAULT_SIMULATION = "2xH100-80GB,H200-141GB[3g.71gb,2g.35gb,2x1g.18gb]"


def _hub_config_file() -> Path:
    from gpuaf import hub

    return Path(hub.__file__).with_name("jupyterhub_config.py")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gpuaf", description=__doc__)
    p.add_argument("--version", action="version", version=f"gpuaf {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_settings(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument(
            "--settings",
            metavar="FILE",
            help=f"settings file (default: ${ENV_VAR}, else the embedded demo defaults)",
        )
        return parser

    def with_overrides(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--port", type=int, help="public port (overrides portal.port)")
        parser.add_argument(
            "--simulate-gpus",
            nargs="?",
            const=DEFAULT_SIMULATION,
            metavar="SPEC",
            help="SIMULATED GPUs, to show slices on a machine without GPUs "
            f"(default spec: {DEFAULT_SIMULATION}); sessions get no real GPU",
        )

    demo = with_settings(
        sub.add_parser("demo", help="run the whole portal here with a demo identity provider")
    )
    with_overrides(demo)
    hub = with_settings(sub.add_parser("hub", help="run JupyterHub with the portal"))
    with_overrides(hub)
    with_settings(sub.add_parser("api", help="run the portal API (see portal.api_url)"))
    with_settings(sub.add_parser("migrate", help="bring the ledger schema up to date"))
    slices = with_settings(sub.add_parser("slices", help="the slice catalogue, availability"))
    cli_slices.add_arguments(slices, DEFAULT_SIMULATION)
    submit = with_settings(sub.add_parser("submit", help="submit a notebook as a batch job"))
    cli_submit.add_arguments(submit)
    jobs = with_settings(sub.add_parser("jobs", help="my notebook jobs: list, show, logs, cancel"))
    cli_jobs.add_jobs_arguments(jobs)
    node = sub.add_parser("node", help="GPU worker tools: `gpuaf node inspect`")
    node.add_argument("node_args", nargs=argparse.REMAINDER, metavar="inspect ...")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except SettingsError as exc:
        print(f"gpuaf: {exc}", file=sys.stderr)
        return 2
    except PublicError as exc:
        print(f"gpuaf: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _settings(args: argparse.Namespace) -> tuple[Settings, Path]:
    """Load the settings, apply command-line overrides; return them and a file holding them."""
    settings = load_settings(args.settings)
    overrides: dict = {}
    if getattr(args, "port", None):
        overrides["portal"] = {"port": args.port}
    if getattr(args, "simulate_gpus", None):
        overrides["backend"] = {"local": {"simulate_gpus": args.simulate_gpus}}
    path = settings.source or EXAMPLE
    if overrides:
        overrides.setdefault("portal", {})["data_dir"] = str(settings.data_dir)
        settings = settings.with_overrides(**overrides)
        path = settings.data_dir / "settings.effective.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = settings.model_dump(mode="json", exclude_none=True)
        if settings.iam.client_secret_file:  # the file stays the only place of the secret
            data["iam"].pop("client_secret", None)
        else:
            data["iam"]["client_secret"] = settings.iam.client_secret.get_secret_value()
        path.write_text(
            "# written by gpuaf from the settings and command-line options\n"
            + yaml.safe_dump(data, sort_keys=False)
        )
        path.chmod(0o600)
        settings = load_settings(path)
    return settings, path


def _check_ports(settings: Settings) -> None:
    from gpuaf.ports import ensure_free
    from gpuaf.restart import leftover_proxy

    p = settings.portal
    proxy = None if p.proxy_api_url else leftover_proxy(settings.data_dir / "proxy.pid")
    if proxy is not None:  # JupyterHub stops it and starts its own; routes are added again
        print(f"gpuaf hub: replacing the proxy an earlier hub left running (pid {proxy.pid})")
    elif not p.proxy_api_url:  # else the proxy runs on its own
        ensure_free(p.host, p.port, "portal.port", "the public proxy")
        ensure_free("127.0.0.1", p.proxy_api_port, "portal.proxy_api_port", "the proxy's API")
    # an earlier hub's portal API ends with that hub: give it a moment to let go of its port
    ensure_free(p.hub_ip, p.hub_port, "portal.hub_port", "the hub's internal API", wait=10)
    if not p.api_url:
        ensure_free("127.0.0.1", p.api_port, "portal.api_port", "the portal API", wait=10)


def cmd_hub(args: argparse.Namespace) -> int:
    from gpuaf.components import hub_tokens
    from gpuaf.hub.auth import discover
    from gpuaf.ledger import migrate

    settings, path = _settings(args)
    hub_tokens(settings)
    _check_ports(settings)
    discover(settings.iam.issuer)
    migrate(settings.ledger_url, password_file=settings.ledger.password_file)
    env = {**os.environ, ENV_VAR: str(path)}
    env.setdefault("JUPYTERHUB_CRYPT_KEY", _crypt_key(settings.data_dir))
    argv = [sys.executable, "-m", "jupyterhub", "-f", str(_hub_config_file())]
    os.execve(sys.executable, argv, env)  # noqa: S606 - argument list, no shell


def _crypt_key(data_dir: Path) -> str:
    """The key encrypting users' tokens in the hub's database, made once, kept 0600."""
    path = data_dir / "jupyterhub_crypt_key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip()


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn
    from traitlets import TraitError

    from gpuaf.api.app import create_app
    from gpuaf.components import service_auth, standalone_api_environment
    from gpuaf.facility import Facility
    from gpuaf.restart import die_with_parent

    settings = load_settings(args.settings)
    if settings.portal.api_url:  # an external service of the hub, run on its own
        standalone_api_environment(settings)
    elif os.environ.get("JUPYTERHUB_SERVICE_NAME"):
        die_with_parent()  # a hub-managed service ends with its hub, even after kill -9
    not_under_hub = PublicError(
        "`gpuaf api` runs as a service of the hub, which starts it; start the portal with "
        "`gpuaf hub` or `gpuaf demo`, or set portal.api_url to run the API on its own."
    )
    if not os.environ.get("JUPYTERHUB_API_TOKEN"):
        raise not_under_hub
    try:
        hub_auth = service_auth(cache_max_age=60)
    except TraitError as exc:
        raise not_under_hub from exc
    app = create_app(Facility.from_settings(settings), hub_auth)
    uvicorn.run(
        app,
        host=settings.portal.api_ip,
        port=settings.portal.api_port,
        log_level="info",
        proxy_headers=False,
    )
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from gpuaf.ledger import migrate

    settings = load_settings(args.settings)
    migrate(settings.ledger_url, password_file=settings.ledger.password_file)
    print(f"ledger is up to date: {settings.ledger_url.split('@')[-1]}")
    return 0


def cmd_slices(args: argparse.Namespace) -> int:
    from gpuaf import cli_slices

    settings, _ = _settings(args)
    return cli_slices.run(settings, args)


def cmd_submit(args: argparse.Namespace) -> int:
    return cli_submit.run(load_settings(args.settings), args)


def cmd_jobs(args: argparse.Namespace) -> int:
    return cli_jobs.jobs(load_settings(args.settings), args)


def cmd_node(args: argparse.Namespace) -> int:
    from gpuaf import node

    if args.node_args[:1] != ["inspect"]:
        raise PublicError("usage: gpuaf node inspect [--mps-shares N] [--json]")
    return node.main(args.node_args[1:])


def cmd_demo(args: argparse.Namespace) -> int:
    from gpuaf.demo.supervisor import Demo, banner, idp_port
    from gpuaf.ports import ensure_free
    from gpuaf.spawners.backends import make_backend

    settings, path = _settings(args)
    _check_ports(settings)
    ensure_free(*idp_port(settings), "iam.issuer", "the demo OIDC provider")
    backend = make_backend(settings)
    inv = getattr(backend, "inventory", None)
    gpus = (
        f"SIMULATED: {settings.backend.local.simulate_gpus}"
        if backend.simulated
        else inv.note
        if inv is not None
        else settings.backend.kind
    )
    demo = Demo(settings, path)
    try:
        demo.start()
        print(banner(settings, gpus), flush=True)
        return demo.wait()
    finally:
        demo.stop()


COMMANDS = {
    "node": cmd_node,
    "demo": cmd_demo,
    "hub": cmd_hub,
    "api": cmd_api,
    "migrate": cmd_migrate,
    "slices": cmd_slices,
    "submit": cmd_submit,
    "jobs": cmd_jobs,
}
