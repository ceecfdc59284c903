"""One distribution, gpuaf.*, no bare top-level packages, the spawner entry point."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

import pytest


@pytest.mark.parametrize("name", ["api", "hub", "spawners", "templates"])
def test_bare_top_level_imports_fail(name, tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", f"import {name}"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "ModuleNotFoundError" in result.stderr


def test_the_packages_live_under_gpuaf():
    import gpuaf.api.app
    import gpuaf.hub.config
    import gpuaf.spawners.spawner
    import gpuaf.templates

    assert gpuaf.templates.HUB_TEMPLATES.joinpath("login.html").exists()
    assert gpuaf.api.app.create_app and gpuaf.hub.config.configure


def test_slice_spawner_is_registered_for_jupyterhub():
    [ep] = [e for e in entry_points(group="jupyterhub.spawners") if e.name == "slice"]
    from gpuaf.spawners.spawner import SliceSpawner

    assert ep.load() is SliceSpawner
