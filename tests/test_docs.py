"""The documentation: the site builds with mkdocs --strict, every page is in the nav,
every image a page shows exists, and docs/architecture.md stays true to the code (every
path and module it names exists; every Python module of the packages is named there).

The settings reference (docs/admin/settings.md against
docs/generate_settings_reference.py) is checked in tests/test_settings.py.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
ARCHITECTURE = DOCS / "architecture.md"

# top-level folders of the repository a path named in the docs may start with
REPO_DIRS = (
    "gpuaf",
    "api",
    "spawners",
    "hub",
    "templates",
    "labextension",
    "portal-ui",
    "bench",
    "helm",
    "docs",
    "tests",
    "scripts",
)
# the packages whose every module architecture.md names, and where `gpuaf.<x>` lives
PACKAGES = {"gpuaf": "gpuaf", "api": "api", "spawners": "spawners", "hub": "hub"}
SUBPACKAGE_DIRS = {"hub": "hub", "api": "api", "spawners": "spawners", "templates": "templates"}
# modules with nothing to describe: package markers and entry shims (every __init__.py
# is exempt as well, unless it does more than mark a package: then name it anyway)
TRIVIAL_MODULES = {"gpuaf/__main__.py", "gpuaf/ledger/migrations/env.py"}


def _load_refresh_module():
    spec = importlib.util.spec_from_file_location("refresh", DOCS / "refresh_screenshots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _nav_pages(nav: list) -> list[str]:
    pages: list[str] = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        if isinstance(value, list):
            pages += _nav_pages(value)
        elif not re.match(r"^[a-z]+://", value):
            pages.append(value)
    return pages


def _pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


# --- the site ---------------------------------------------------------------------------


def test_site_builds_strict(tmp_path):
    """mkdocs --strict fails on a broken link or anchor, a missing page, a page not in
    the nav."""
    missing = [m for m in ("mkdocs", "material") if importlib.util.find_spec(m) is None]
    if missing:
        reason = (
            f"{' and '.join(missing)} not installed (pip install mkdocs mkdocs-material, "
            "or scripts/docs)"
        )
        if os.environ.get("GPUAF_REQUIRE_DOCS") == "1":
            pytest.fail(f"GPUAF_REQUIRE_DOCS=1 but {reason}")
        pytest.skip(reason)
    site = tmp_path / "site"
    build = [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet"]
    run = subprocess.run(
        [*build, "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert (site / "index.html").is_file()
    assert (site / "architecture.html").is_file()
    for image in (DOCS / "images").iterdir():
        assert (site / "images" / image.name).is_file(), image.name
    assert not list(site.rglob("*.py")), "scripts in docs/ must not be published"


def test_every_page_is_in_the_nav():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    nav = _nav_pages(config["nav"])
    assert len(nav) == len(set(nav)), "a page is twice in the nav"
    for page in nav:
        assert (DOCS / page).is_file(), f"mkdocs.yml names {page}, which is not in docs/"
    pages = {p.relative_to(DOCS).as_posix() for p in _pages()}
    assert pages - set(nav) == set(), "pages missing from the nav in mkdocs.yml"


# --- screenshots ------------------------------------------------------------------------

IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)")


def test_every_image_shown_exists_and_every_screenshot_is_shown():
    shown: set[Path] = set()
    for page in _pages():
        for target in IMAGE.findall(page.read_text(encoding="utf-8")):
            path = (page.parent / target).resolve()
            assert path.is_file(), f"{page.relative_to(ROOT)} shows {target}, which is missing"
            shown.add(path)
    images = {p.resolve() for p in (DOCS / "images").iterdir()}
    assert images - shown == set(), "images in docs/images/ that no page shows"
    named = set(_load_refresh_module().SCREENSHOTS)
    assert {p.name for p in images} == named, (
        "docs/images/ and SCREENSHOTS in docs/refresh_screenshots.py must list the same files"
    )
    assert sum(p.stat().st_size for p in images) < 3 * 2**20, "keep docs/images/ small"


def test_refresh_screenshots_refuses_when_one_is_missing(tmp_path, capsys):
    refresh = _load_refresh_module()
    source, target = tmp_path / "artifacts", tmp_path / "images"
    source.mkdir()
    names = list(refresh.SCREENSHOTS)
    for name in names[1:]:
        (source / name).write_bytes(b"png")
    assert refresh.main(["--source", str(source), "--target", str(target)]) == 1
    err = capsys.readouterr().err
    assert names[0] in err and refresh.SCREENSHOTS[names[0]] in err
    assert not target.exists(), "nothing is copied when a screenshot is missing"
    (source / names[0]).write_bytes(b"png")
    assert refresh.main(["--source", str(source), "--target", str(target)]) == 0
    assert sorted(p.name for p in target.iterdir()) == sorted(names)


# --- architecture.md is true to the code ------------------------------------------------

CODE_SPAN = re.compile(r"`([^`\n]+)`")
REPO_PATH = re.compile(rf"^(?:{'|'.join(re.escape(d) for d in REPO_DIRS)})/[^\s<>]*$")
DOTTED = re.compile(r"^gpuaf(?:\.[A-Za-z_][A-Za-z0-9_]*)+$")


def _spans(text: str) -> set[str]:
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)  # diagrams and examples
    return set(CODE_SPAN.findall(text))


def _expand(path: str) -> list[str]:
    """`a/{b,c}.py` → a/b.py, a/c.py."""
    m = re.search(r"\{([^{}]*)\}", path)
    if not m:
        return [path]
    return [
        p for alt in m[1].split(",") for p in _expand(path[: m.start()] + alt + path[m.end() :])
    ]


def _exists(path: str) -> bool:
    return any(ROOT.glob(path)) if "*" in path else (ROOT / path).exists()


def _top_level_names(module: Path) -> set[str]:
    tree = ast.parse(module.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def _resolves(dotted: str) -> bool:
    """`gpuaf.ledger.usage`, `gpuaf.hub.config.configure`: a module, or a name in one."""
    _, first, *rest = dotted.split(".")
    path = ROOT / SUBPACKAGE_DIRS.get(first, f"gpuaf/{first}")
    parts = rest
    if not path.is_dir():
        path, parts = path.with_suffix(".py"), rest
        if not path.is_file():
            return False
    while parts and path.is_dir():
        head, *parts = parts
        if (path / head).is_dir():
            path = path / head
        elif (path / f"{head}.py").is_file():
            path = path / f"{head}.py"
        else:
            parts = [head, *parts]
            break
    if not parts:
        return True
    module = path / "__init__.py" if path.is_dir() else path
    return len(parts) == 1 and parts[0] in _top_level_names(module)


def test_architecture_names_only_what_exists():
    spans = _spans(ARCHITECTURE.read_text(encoding="utf-8"))
    paths = [p for s in spans if REPO_PATH.match(s) for p in _expand(s)]
    assert len(paths) > 50, "the path pattern no longer finds the module tables"
    assert [p for p in paths if not _exists(p)] == []
    dotted = [s for s in spans if DOTTED.match(s)]
    assert [d for d in dotted if not _resolves(d)] == []


def _modules() -> list[str]:
    """Python modules of the packages, as committed (work in progress not yet added to
    git is left out)."""
    listed = subprocess.run(
        ["git", "ls-files", "--", *(f"{d}/*.py" for d in PACKAGES.values())],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if listed.returncode == 0:
        files = listed.stdout.split()
    else:  # not a git checkout (an unpacked source archive)
        files = [p.relative_to(ROOT).as_posix() for d in PACKAGES for p in (ROOT / d).rglob("*.py")]
    return sorted(
        f
        for f in files
        if "/migrations/versions/" not in f and (ROOT / f).is_file() and "__pycache__" not in f
    )


def test_architecture_names_every_module():
    text = ARCHITECTURE.read_text(encoding="utf-8")
    named = {p for s in _spans(text) if REPO_PATH.match(s) for p in _expand(s)}
    unnamed = [
        m
        for m in _modules()
        if m not in named and m not in TRIVIAL_MODULES and not m.endswith("/__init__.py")
    ]
    assert unnamed == [], "modules docs/architecture.md does not name: add a row for each"
    gone = [m for m in TRIVIAL_MODULES if not (ROOT / m).is_file()]
    assert gone == [], "modules in TRIVIAL_MODULES that no longer exist"
