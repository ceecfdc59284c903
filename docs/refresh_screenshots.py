"""Copy the screenshots the guides show from test-artifacts/ into docs/images/.

The end-to-end browser tests (tests/test_e2e_browser.py, test_e2e_labext.py,
test_e2e_dashboards.py) write PNGs into test-artifacts/. The guides show the ones named
in SCREENSHOTS, committed under docs/images/. After a test run:

    .venv/bin/python docs/refresh_screenshots.py              # into docs/images/
    .venv/bin/python docs/refresh_screenshots.py --target DIR  # elsewhere

Every named screenshot must be there: if one is missing, nothing is copied and the
command exits 1, naming what is missing and which test writes it. `scripts/docs --fresh`
builds the site with the screenshots of the last test run this way, into a temporary
copy of docs/.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# screenshot → the test that takes it
SCREENSHOTS: dict[str, str] = {
    "01-login.png": "tests/test_e2e_browser.py",
    "03-spawn-form.png": "tests/test_e2e_browser.py",
    "04-progress.png": "tests/test_e2e_browser.py",
    "06-home-running.png": "tests/test_e2e_browser.py",
    "labext-01-notebook-toolbar.png": "tests/test_e2e_labext.py",
    "labext-02-dialog.png": "tests/test_e2e_labext.py",
    "labext-04-job-succeeded.png": "tests/test_e2e_labext.py",
    "labext-06-job-page.png": "tests/test_e2e_labext.py",
    "dashboard-01-overview.png": "tests/test_e2e_dashboards.py",
    "dashboard-02-usage-report.png": "tests/test_e2e_dashboards.py",
    "dashboard-03-live-sessions.png": "tests/test_e2e_dashboards.py",
    "dashboard-04-audit.png": "tests/test_e2e_dashboards.py",
    "dashboard-05-nodes.png": "tests/test_e2e_dashboards.py",
    "dashboard-06-groups.png": "tests/test_e2e_dashboards.py",
    "dask-01-cluster.png": "tests/test_e2e_slurm.py",
}


def missing(source: Path) -> list[str]:
    """The named screenshots that are not files in source."""
    return [name for name in SCREENSHOTS if not (source / name).is_file()]


def refresh(source: Path, target: Path) -> list[Path]:
    """Copy every named screenshot from source to target; none if one is missing."""
    absent = missing(source)
    if absent:
        tests = sorted({SCREENSHOTS[name] for name in absent})
        raise FileNotFoundError(
            f"{len(absent)} screenshot(s) missing in {source}: {', '.join(absent)}. "
            f"They are written by {', '.join(tests)}: run "
            f"`.venv/bin/python -m pytest {' '.join(tests)}` first. Nothing was copied."
        )
    target.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copyfile(source / name, target / name)) for name in SCREENSHOTS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--source", type=Path, default=ROOT / "test-artifacts", help="default: test-artifacts/"
    )
    parser.add_argument(
        "--target", type=Path, default=ROOT / "docs" / "images", help="default: docs/images/"
    )
    args = parser.parse_args(argv)
    try:
        copied = refresh(args.source, args.target)
    except FileNotFoundError as exc:
        print(f"refresh_screenshots: {exc}", file=sys.stderr)
        return 1
    size = sum(p.stat().st_size for p in copied)
    print(f"copied {len(copied)} screenshots ({size / 1024:.0f} KiB) into {args.target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
