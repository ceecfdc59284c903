"""Admins' edits of groups: checked, stored, laid over the settings (SQLite, PostgreSQL)."""

from __future__ import annotations

import pytest
import yaml

from gpuaf import group_edits
from gpuaf.errors import PublicError
from gpuaf.facility import Facility
from gpuaf.ledger import Ledger, migrate
from gpuaf.settings import EXAMPLE, Settings


@pytest.fixture
def settings() -> Settings:
    return Settings.model_validate(yaml.safe_load(EXAMPLE.read_text()))


def form(**fields):
    return {k: v if isinstance(v, list) else [v] for k, v in fields.items()}


def test_an_edit_replaces_the_quota_and_the_slices_of_one_group(settings):
    assert "mps-25" not in group_edits.allowed_profiles(settings, "higgs")  # neutrino only
    edit = group_edits.check(
        settings,
        "higgs",
        form(concurrent_slices="1", gpu_hours_per_month="", profiles=["cpu", "mps-25", "gpu-1"]),
    )
    assert edit == group_edits.GroupEdit(1, None, ("cpu", "mps-25", "gpu-1"))
    new = group_edits.apply(settings, {"higgs": edit})
    assert new.groups["higgs"].quota.concurrent_slices == 1
    assert new.groups["higgs"].quota.gpu_hours_per_month is None
    assert [p.name for p in new.profiles_for(["higgs"])] == ["cpu", "mps-25", "gpu-1"]
    # the other groups keep what they had
    assert [p.name for p in new.profiles_for(["neutrino"])] == [
        p.name for p in settings.profiles_for(["neutrino"])
    ]
    assert new.groups["neutrino"] == settings.groups["neutrino"]
    assert settings.groups["higgs"].quota.concurrent_slices == 2  # the file's, untouched


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"concurrent_slices": "-1"}, "Sessions at once must be a number from 0 to 10000"),
        ({"concurrent_slices": "two"}, "got 'two'"),
        ({"gpu_hours_per_month": "nan"}, "GPU-hours a month must be a number"),
        ({"gpu_hours_per_month": "1e99"}, "from 0 to 1e+07"),
        ({"profiles": ["cpu", "gpu-9"]}, "Unknown slice profile(s) gpu-9. Profiles: cpu,"),
    ],
)
def test_bad_edits_say_what_is_allowed(settings, fields, words):
    with pytest.raises(PublicError) as err:
        group_edits.check(settings, "higgs", form(**fields))
    assert words in err.value.message and err.value.status == 400
    with pytest.raises(PublicError, match=r"There is no group 'physics'\. Groups: ") as err:
        group_edits.check(settings, "physics", form())
    assert err.value.status == 404


def test_a_saved_edit_reaches_every_facility_reading_the_ledger(ledger_url, settings):
    migrate(ledger_url)
    settings = settings.with_overrides(ledger={"url": ledger_url})
    ledger = Ledger(ledger_url)
    facility = Facility(settings, None, ledger)  # no backend needed for settings
    assert facility.settings.groups["neutrino"].quota.gpu_hours_per_month == 50
    edit = group_edits.GroupEdit(3, 75.5, ("cpu",))
    group_edits.save(ledger, "neutrino", edit, "erin")
    facility.forget_settings()
    assert facility.settings.groups["neutrino"].quota.gpu_hours_per_month == 75.5
    assert [p.name for p in facility.settings.profiles_for(["neutrino"])] == ["cpu"]
    group_edits.save(
        ledger, "neutrino", group_edits.GroupEdit(None, None, ("cpu", "mps-25")), "erin"
    )
    assert group_edits.read(ledger)["neutrino"] == group_edits.GroupEdit(
        None, None, ("cpu", "mps-25")
    )
    ledger.dispose()
