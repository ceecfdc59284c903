"""Quotas: limits from groups, usage from the ledger, refusals that say what is left."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
import yaml

from gpuaf.ledger import Ledger, migrate
from gpuaf.ledger.models import SessionEvent, SessionRecord
from gpuaf.networks import UntrustedNetwork, check_client, forwarded_client
from gpuaf.policy import QuotaExceeded, check_booking, limits_for, usage_of
from gpuaf.settings import EXAMPLE, Settings

NOW = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def settings() -> Settings:
    return Settings.model_validate(yaml.safe_load(EXAMPLE.read_text()))


def test_the_most_generous_group_wins(settings):
    assert limits_for(settings, ["neutrino"]).concurrent_slices == 1
    assert limits_for(settings, ["higgs", "neutrino"]).concurrent_slices == 2
    assert limits_for(settings, ["higgs", "neutrino"]).gpu_hours_per_month == 200
    # a group without a quota means no limit, whatever the other groups say
    assert limits_for(settings, ["neutrino", "facility-admins"]).concurrent_slices is None
    assert limits_for(settings, ["unknown"]).gpu_hours_per_month is None


def _session(db, sid, user, share, events, server=""):
    db.add(
        SessionRecord(
            id=sid,
            user_name=user,
            server_name=server,
            profile="p",
            backend="local",
            state=events[-1][0],
            gpu_share=share,
            events=[SessionEvent(state=s, at=at) for s, at in events],
        )
    )


def test_gpu_hours_count_shares_and_only_this_month(ledger_url):
    migrate(ledger_url)
    ledger = Ledger(ledger_url)
    h = dt.timedelta(hours=1)
    with ledger.session() as db:
        # 2 whole GPUs for 3 h, stopped
        _session(
            db,
            "a",
            "alice",
            2.0,
            [("requested", NOW - 5 * h), ("running", NOW - 5 * h), ("stopped", NOW - 2 * h)],
        )
        # a MIG 1g slice (1/7) running for the last 7 h: 1 GPU-hour so far
        _session(
            db,
            "b",
            "alice",
            1 / 7,
            [("requested", NOW - 7 * h), ("starting", NOW - 7 * h)],
            server="gpu",
        )
        # started last month, stopped 1 h into this one: only that hour counts
        start = dt.datetime(2026, 10, 31, 20, 0, tzinfo=dt.UTC)
        _session(
            db,
            "c",
            "alice",
            1.0,
            [
                ("requested", start),
                ("running", start),
                ("stopped", dt.datetime(2026, 11, 1, 1, 0, tzinfo=dt.UTC)),
            ],
        )
        # queued, never ran: no GPU time
        _session(db, "d", "alice", 1.0, [("requested", NOW - h), ("queued", NOW - h)], server="q")
        _session(db, "e", "bob", 4.0, [("requested", NOW - h), ("running", NOW - h)])
    used = usage_of(ledger, "alice", now=NOW)
    assert used.gpu_hours_this_month == pytest.approx(6 + 1 + 1)
    assert used.active_sessions == 2  # b (starting) and d (queued)
    assert usage_of(ledger, "alice", except_server="gpu", now=NOW).active_sessions == 1
    ledger.dispose()


def test_bookings_over_quota_are_refused_with_what_is_left(ledger_url, settings):
    migrate(ledger_url)
    ledger = Ledger(ledger_url)
    gpu = settings.profile("gpu-1")
    cpu = settings.profile("cpu")
    check_booking(settings, ledger, "bob", ["neutrino"], gpu, "")  # nothing running yet
    with ledger.session() as db:
        _session(db, "x", "bob", 1.0, [("requested", NOW), ("running", NOW)], server="one")
    with pytest.raises(QuotaExceeded, match=r"allows 1 session\(s\) at once and you have 1"):
        check_booking(settings, ledger, "bob", ["neutrino"], cpu, "")
    check_booking(settings, ledger, "bob", ["neutrino"], cpu, "one")  # restarting that one
    with ledger.session() as db:
        db.get(SessionRecord, "x").state = "stopped"
        old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=60)
        _session(
            db,
            "y",
            "bob",
            1.0,
            [("requested", old), ("running", old), ("stopped", old + dt.timedelta(hours=55))],
        )
    with pytest.raises(QuotaExceeded, match=r"quota of 50 GPU-hours this month is used up"):
        check_booking(settings, ledger, "bob", ["neutrino"], gpu, "")
    check_booking(settings, ledger, "bob", ["neutrino"], cpu, "")  # CPU slices stay open
    ledger.dispose()


@pytest.mark.parametrize(
    ("address", "ok"),
    [
        ("192.0.2.7", True),
        ("2001:db8::1", True),
        ("::ffff:192.0.2.9", True),
        ("198.51.100.1", False),
        ("", False),
        ("not-an-ip", False),
    ],
)
def test_trusted_networks(address, ok):
    import ipaddress

    nets = [ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("2001:db8::/32")]
    if ok:
        check_client(address, nets)
    else:
        with pytest.raises(UntrustedNetwork, match="trusted networks"):
            check_client(address, nets)
    check_client(address, [])  # no list: everyone


def test_the_client_behind_the_proxy():
    assert forwarded_client("127.0.0.1", "6.6.6.6, 192.0.2.7") == "192.0.2.7"
    assert forwarded_client("192.0.2.8", "6.6.6.6") == "192.0.2.8"  # not from the proxy
    assert forwarded_client("127.0.0.1", None) == "127.0.0.1"
    # a proxy in its own pod: believed only from the networks named as its own
    pods = [ipaddress.ip_network("10.244.0.0/16")]
    assert forwarded_client("10.244.3.9", "6.6.6.6, 192.0.2.7", pods) == "192.0.2.7"
    assert forwarded_client("10.245.3.9", "192.0.2.7", pods) == "10.245.3.9"
    assert forwarded_client("not-an-ip", "192.0.2.7", pods) == "not-an-ip"
