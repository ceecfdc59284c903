"""ledger.password_file: the database password comes from a file, never from the url."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from sqlalchemy import event

from gpuaf import cli
from gpuaf.errors import SettingsError
from gpuaf.ledger.db import Ledger, make_engine
from gpuaf.settings import EXAMPLE, load_settings

URL = "postgresql+psycopg://gpuaf@ledger.example.org:5432/gpuaf"


class Connected(Exception):
    """Raised instead of connecting: the parameters were seen."""


def _connect_params(engine) -> dict:
    seen: dict = {}

    def capture(dialect, conn_rec, cargs, cparams):
        seen.update(cparams)
        raise Connected

    event.listen(engine, "do_connect", capture)
    with pytest.raises(Connected):
        engine.connect()
    return seen


def test_the_password_file_gives_the_password_to_the_driver(tmp_path):
    secret = tmp_path / "password"
    secret.write_text("s3cr3t\n")  # as `kubectl create secret --from-file` often leaves it
    engine = make_engine(URL, secret)
    assert _connect_params(engine)["password"] == "s3cr3t"
    assert "s3cr3t" not in str(engine.url)  # shown masked
    ledger = Ledger(URL, secret)
    assert ledger.url == URL
    ledger.dispose()


def test_without_a_password_file_the_url_is_used_as_given():
    assert make_engine(URL).url.password is None


@pytest.mark.parametrize("kind", ["missing", "directory", "empty"])
def test_an_unusable_password_file_is_a_clear_error(tmp_path, kind):
    path = tmp_path / "password"
    if kind == "directory":
        path.mkdir()
    if kind == "empty":
        path.write_text("\n")
    expected = {
        "missing": r"cannot read .*password \(No such file or directory\)",
        "directory": r"cannot read .*password \(Is a directory\)",
        "empty": r".*/password is empty; it must hold the password",
    }[kind]
    with pytest.raises(SettingsError, match=r"^ledger\.password_file: " + expected):
        make_engine(URL, path)


def _settings(tmp_path: Path, **ledger) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["portal"]["data_dir"] = str(tmp_path / "data")
    data["ledger"] = ledger
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_gpuaf_migrate_names_the_unreadable_file(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "password"
    path = _settings(tmp_path, url=URL, password_file=str(missing))
    assert load_settings(path).ledger.password_file == missing  # read on connecting only
    assert cli.main(["migrate", "--settings", str(path)]) == 2
    assert f"ledger.password_file: cannot read {missing}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("ledger", "message"),
    [
        ({"password_file": "/run/pw"}, "needs a url of a database server"),
        ({"url": "sqlite:///ledger.sqlite", "password_file": "/run/pw"}, "not SQLite"),
        (
            {"url": "postgresql+psycopg://gpuaf:pw@db/gpuaf", "password_file": "/run/pw"},
            "not both",
        ),
    ],
)
def test_settings_refuse_a_password_file_that_cannot_apply(tmp_path, ledger, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(_settings(tmp_path, **ledger))
