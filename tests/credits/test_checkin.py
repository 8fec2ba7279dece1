"""The daily check-in: once per calendar day in the platform's time zone, a streak and its bonuses, a monthly
cap, off until an admin turns it on; concurrent check-ins grant once; bad settings are a 400 writing nothing."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from django.db import connections
from psycopg._queries import MAX_CACHED_STATEMENT_LENGTH

from credits import sql
from credits.errors import AlreadyCheckedIn, CheckinDisabled
from credits.models import Checkin, CheckinConfig, CreditAccount, LedgerEntry
from credits.services.checkin import checkin, checkin_config_set
from tests.api_helpers import post_json
from tests.conftest import client_for, make_member

CHECKIN_URL = "/api/billing/checkin/"
CONFIG_URL = "/api/billing/admin/checkin/config/"


def configure(platform, **fields):  # noqa: ANN001, ANN003, ANN201
    values = {"enabled": True, "credits_per_day": D("1.00"), "streak_bonuses": {}, "monthly_cap": None,
              "time_zone": platform.time_zone} | fields
    return checkin_config_set(platform=platform, actor=None, **values)


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.django_db
def test_a_check_in_grants_the_days_credits_once(platform, member):
    configure(platform)
    result = checkin(platform=platform, account=member.account, actor=member.user, now=at(2026, 12, 2, 10))
    assert (result.checkin.credits, result.checkin.streak, result.entry.transaction_type) == (D("1"), 1, "checkin")
    assert result.entry.actor_id == member.user.pk
    assert result.next_checkin_at == at(2026, 12, 3)
    with pytest.raises(AlreadyCheckedIn) as again:
        checkin(platform=platform, account=member.account, actor=member.user, now=at(2026, 12, 2, 23, 59))
    assert again.value.details == {"next_checkin_at": "2026-12-03T00:00:00Z"}
    assert LedgerEntry.objects.filter(transaction_type="checkin").count() == 1


@pytest.mark.django_db
def test_the_day_is_the_platforms_calendar_day(platform, member):
    configure(platform, time_zone="Asia/Tokyo")  # UTC+9: 15:00 UTC is already tomorrow
    checkin(platform=platform, account=member.account, actor=None, now=at(2026, 12, 2, 14, 59))  # Dec 2, 23:59
    result = checkin(platform=platform, account=member.account, actor=None, now=at(2026, 12, 2, 15))  # Dec 3
    assert (result.checkin.day.isoformat(), result.checkin.streak) == ("2026-12-03", 2)
    assert result.next_checkin_at == at(2026, 12, 3, 15)


@pytest.mark.django_db
def test_a_streak_earns_its_bonus_and_a_missed_day_starts_again(platform, member):
    configure(platform, streak_bonuses={"3": D("5")})
    awarded = [checkin(platform=platform, account=member.account, actor=None, now=at(2026, 12, d, 9)).checkin
               for d in (1, 2, 3, 4, 6)]
    assert [(c.streak, c.credits) for c in awarded] == [(1, D("1")), (2, D("1")), (3, D("6")), (4, D("1")),
                                                        (1, D("1"))]
    assert CreditAccount.objects.get(pk=member.account.pk).balance == member.account.balance + D("10")


@pytest.mark.django_db
def test_the_monthly_cap_stops_the_grants_but_not_the_streak(platform, member):
    configure(platform, credits_per_day=D("2"), monthly_cap=D("5"))
    got = [checkin(platform=platform, account=member.account, actor=None, now=at(2026, 11, d, 9)).checkin
           for d in (28, 29, 30)]
    assert [c.credits for c in got] == [D("2"), D("2"), D("1")]
    december = checkin(platform=platform, account=member.account, actor=None, now=at(2026, 12, 1, 9)).checkin
    assert (december.credits, december.streak) == (D("2"), 4)
    capped = checkin(platform=platform, account=member.account, actor=None, now=at(2026, 12, 2, 9))
    configure(platform, credits_per_day=D("2"), monthly_cap=D("2"))
    zero = checkin(platform=platform, account=member.account, actor=None, now=at(2026, 12, 3, 9))
    assert capped.checkin.credits == D("2") and (zero.checkin.credits, zero.entry) == (D("0"), None)


def test_the_one_statement_fits_psycopgs_query_cache():
    assert len(sql.CHECKIN_GRANT.encode()) <= MAX_CACHED_STATEMENT_LENGTH


@pytest.mark.django_db
def test_off_until_enabled(platform, member):
    with pytest.raises(CheckinDisabled):
        checkin(platform=platform, account=member.account, actor=None)
    configure(platform, enabled=False)
    with pytest.raises(CheckinDisabled):
        checkin(platform=platform, account=member.account, actor=None)
    assert not Checkin.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_check_ins_grant_once(platform):
    member = make_member(platform, "racer")
    configure(platform)
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def go() -> None:
        try:
            barrier.wait()
            checkin(platform=platform, account=member.account, actor=None)
            outcomes.append("granted")
        except AlreadyCheckedIn:
            outcomes.append("already")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["already"] * 7 + ["granted"]
    assert Checkin.objects.count() == 1
    assert LedgerEntry.objects.filter(account=member.account, transaction_type="checkin").count() == 1


# --- over HTTP ------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_over_http_a_member_checks_in_and_sees_the_streak(platform, owner, member):
    response = client_for(owner).put(CONFIG_URL, {"enabled": True, "credits_per_day": "0.50",
                                                  "streak_bonuses": {"7": "3"}, "monthly_cap": "10",
                                                  "time_zone": "Europe/Paris"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json() | {"updated_at": None} == {
        "enabled": True, "credits_per_day": "0.50", "streak_bonuses": {"7": "3.00"}, "monthly_cap": "10.00",
        "credits_expire_after_days": None, "time_zone": "Europe/Paris", "updated_at": None}
    done = post_json(client_for(member), CHECKIN_URL, {})
    assert done.status_code == 201, done.content
    body = done.json()
    assert (body["credits_awarded"], body["streak"]) == ("0.50", 1)
    assert set(body) == {"credits_awarded", "streak", "balance", "next_checkin_at", "transaction_id", "expires_at"}
    assert body["expires_at"] is None  # no expiry set
    again = post_json(client_for(member), CHECKIN_URL, {})
    assert (again.status_code, again.json()["error"]["code"]) == (409, "already_checked_in")
    state = client_for(member).get(CHECKIN_URL).json()
    assert (state["enabled"], state["checked_in_today"], state["streak"], len(state["history"])) == (
        True, True, 1, 1)


@pytest.mark.django_db
def test_over_http_disabled_is_403_and_members_cannot_configure(platform, member):
    response = post_json(client_for(member), CHECKIN_URL, {})
    assert (response.status_code, response.json()["error"]["code"]) == (403, "checkin_disabled")
    refused = client_for(member).put(CONFIG_URL, {"enabled": True, "credits_per_day": "1"}, format="json")
    assert refused.status_code == 403
    assert not CheckinConfig.objects.exists()


@pytest.mark.django_db
def test_another_platforms_admin_sees_nothing_of_this_one(platform, outsider):
    response = client_for(outsider, platform_key=platform.platform_key).get(CONFIG_URL)
    assert response.status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize("body", [
    {"enabled": True, "credits_per_day": "-1"},
    {"enabled": True, "credits_per_day": "NaN"},
    {"enabled": True, "credits_per_day": "Infinity"},
    {"enabled": True, "credits_per_day": "0.0000001"},
    {"enabled": True, "credits_per_day": "1e30"},
    {"enabled": True, "credits_per_day": [1]},
    {"enabled": "yes", "credits_per_day": "1"},
    {"credits_per_day": "1"},
    {"enabled": True, "credits_per_day": "1", "streak_bonuses": {"0": "1"}},
    {"enabled": True, "credits_per_day": "1", "streak_bonuses": {"seven": "1"}},
    {"enabled": True, "credits_per_day": "1", "streak_bonuses": {"7": "-1"}},
    {"enabled": True, "credits_per_day": "1", "streak_bonuses": ["7"]},
    {"enabled": True, "credits_per_day": "1", "monthly_cap": "-5"},
    {"enabled": True, "credits_per_day": "1", "time_zone": "Mars/Olympus"},
    {"enabled": True, "credits_per_day": "1", "time_zone": 7},
    {"enabled": True, "credits_per_day": "1", "surprise": True},
])
def test_bad_settings_are_a_400_and_write_nothing(platform, owner, body):
    response = client_for(owner).put(CONFIG_URL, body, format="json")
    assert response.status_code == 400, response.content
    assert not CheckinConfig.objects.exists()
    assert platform.__class__.objects.get(pk=platform.pk).time_zone == "UTC"


@pytest.mark.django_db
def test_the_demo_has_the_check_in_on_and_a_rerun_keeps_an_admins_settings():
    from io import StringIO

    from django.core.management import call_command

    call_command("seed_demo", stdout=StringIO())
    config = CheckinConfig.objects.get(platform__platform_key="demo")
    assert (config.enabled, config.credits_per_day, config.credits_expire_after_days) == (True, D(1), 30)
    CheckinConfig.objects.filter(pk=config.pk).update(enabled=False)
    call_command("seed_demo", stdout=StringIO())
    assert CheckinConfig.objects.get(pk=config.pk).enabled is False
