"""Fixtures of the gpuaf test suite.

Index (scope → fixture: what it gives):
  session  postgres_server   URL of a real PostgreSQL server (scratch initdb, or
                             $GPUAF_TEST_POSTGRES_URL); skipped when none can run, an
                             error instead when $GPUAF_REQUIRE_POSTGRES=1 (CI)
  function ledger_url        a fresh, empty ledger database; parametrised: sqlite, postgresql
  session  stack             the real portal started by `gpuaf demo`: OIDC provider, hub,
                             configurable-http-proxy, portal API; simulated GPUs; its ledger
                             is SQLite or PostgreSQL per --ledger
  module   e2e_ledger_url    None (the default SQLite ledger) or a fresh PostgreSQL database,
                             per --ledger, for tests that start their own portal
  session  alice, bob        httpx clients logged in through the OIDC provider
                             (alice: group higgs; bob: group neutrino)
  session  alice_token       a hub API token of alice
  session  slurm             a real Slurm (munge, slurmctld, slurmd) in a scratch dir: 2 fake
                             GPUs, 4 shards each; skipped without slurm-wlm, an error instead
                             when $GPUAF_REQUIRE_SLURM=1 (CI)
  session  slurm_mps         the same with gres mps (Count=100 per GPU) and one MIG 1g.18gb GPU
  session  artifacts         folder for screenshots kept by CI (test-artifacts/)
  module   chromium          a real headless Chromium driven by Playwright
Helpers live in tests/support/.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import htcondor2  # noqa: F401 - before any classad2 use: registers HTCondor's ClassAd functions
import pytest
from support.login import hub_token, login
from support.postgres import ScratchPostgres, create_database, find_bindir
from support.slurm import LocalSlurm, require_slurm, start_slurm
from support.stack import Stack, start_stack

ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--ledger",
        choices=["sqlite", "postgresql"],
        default="sqlite",
        help="ledger database of the end-to-end stack",
    )


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get("GPUAF_TEST_POSTGRES_URL"):
        yield os.environ["GPUAF_TEST_POSTGRES_URL"]
        return
    bindir = find_bindir()
    if bindir is None:
        if os.environ.get("GPUAF_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL is required ($GPUAF_REQUIRE_POSTGRES=1) but not installed")
        pytest.skip("PostgreSQL server binaries not installed")
    # not under pytest's private tmp: the postgres user must be able to reach it
    base = Path(tempfile.mkdtemp(prefix="gpuaf-pg-"))
    base.chmod(0o755)
    server = ScratchPostgres(base / "pg", bindir)
    url = server.start()
    yield url
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    return create_database(request.getfixturevalue("postgres_server"))


@pytest.fixture(scope="session")
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    ledger = None
    if request.config.getoption("--ledger") == "postgresql":
        ledger = create_database(request.getfixturevalue("postgres_server"))
    running = start_stack(tmp_path_factory.mktemp("stack"), ledger_url=ledger)
    yield running
    code = running.interrupt()
    assert code == 0, running.log_tail()


@pytest.fixture(scope="module")
def e2e_ledger_url(request: pytest.FixtureRequest) -> str | None:
    if request.config.getoption("--ledger") == "postgresql":
        return create_database(request.getfixturevalue("postgres_server"))
    return None


@pytest.fixture(scope="session")
def alice(stack: Stack):
    client = login(stack.url, "alice")
    yield client
    client.close()


@pytest.fixture(scope="session")
def bob(stack: Stack):
    client = login(stack.url, "bob")
    yield client
    client.close()


@pytest.fixture(scope="session")
def alice_token(alice, stack: Stack) -> str:
    return hub_token(alice, "alice")


@pytest.fixture(scope="session")
def slurm() -> Iterator[LocalSlurm]:
    require_slurm()
    cluster = start_slurm()  # 2 GPUs, 4 shards each
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def slurm_mps() -> Iterator[LocalSlurm]:
    require_slurm()
    cluster = start_slurm(gres="mps", mig={"1g.18gb": 1}, cpus=16)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    path = ROOT / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="module")  # Playwright's sync API holds an event loop: not past a module
def chromium():
    from playwright.sync_api import sync_playwright

    executable = os.environ.get("GPUAF_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=executable,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()
