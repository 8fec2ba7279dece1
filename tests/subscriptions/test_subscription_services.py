"""subscription_start / subscription_change_plan / subscription_set_status: the rules webhooks rely on."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import IntegrityError, connection, transaction

from billing_service.errors import InvalidInput
from credits.errors import AccountNotFound
from subscriptions.errors import (
    PlanNotFound,
    SubscriptionEnded,
    SubscriptionExists,
    SubscriptionNotFound,
    SubscriptionOwnerMismatch,
)
from subscriptions.models import ChangeKind, Subscription, SubscriptionChange, SubscriptionStatus
from subscriptions.selectors import account_plan_state, subscription_current
from subscriptions.services import subscription_change_plan, subscription_set_status, subscription_start
from tests.conftest import make_member, make_platform
from tests.subscriptions.conftest import make_plan, start, subscription_rows

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def changes_of(subscription: Subscription) -> list[tuple]:
    return list(
        SubscriptionChange.objects.filter(subscription=subscription)
        .order_by("id")
        .values_list("kind", "plan_from__slug", "plan_to__slug", "status_from", "status_to")
    )


# --- start -----------------------------------------------------------------------------------------------


def test_start_puts_the_account_on_the_plan_and_records_it(member, growth, admin):
    result = subscription_start(
        account_id=member.account.pk,
        plan_id=growth.pk,
        billing_cycle="yearly",
        provider="stripe",
        provider_subscription_id="sub_1",
        provider_customer_id="cus_1",
        current_period_start=T0,
        current_period_end=T0 + timedelta(days=365),
        actor=admin.user,
    )
    assert result.changed is True
    sub = Subscription.objects.get()
    assert result.subscription.pk == sub.pk
    assert (sub.account_id, sub.plan_id, sub.previous_plan_id) == (member.account.pk, growth.pk, None)
    assert (sub.status, sub.billing_cycle, sub.provider) == ("active", "yearly", "stripe")
    assert (sub.provider_subscription_id, sub.provider_customer_id) == ("sub_1", "cus_1")
    assert (sub.current_period_start, sub.current_period_end) == (T0, T0 + timedelta(days=365))
    assert sub.ended_at is None and sub.canceled_at is None
    assert changes_of(sub) == [("started", None, "growth", "", "active")]
    assert SubscriptionChange.objects.get().actor_id == admin.user.pk
    state = account_plan_state(account_id=member.account.pk)
    assert (state.current_plan, state.previous_plan, state.free_trial) == ("growth", "free_trial", False)


def test_start_is_idempotent_on_the_provider_subscription_id(member, growth, pro):
    first = subscription_start(
        account_id=member.account.pk,
        plan_id=growth.pk,
        billing_cycle="monthly",
        provider="stripe",
        provider_subscription_id="sub_1",
    )
    again = subscription_start(
        account_id=str(member.account.pk),
        plan_id=pro.pk,
        billing_cycle="yearly",
        provider="stripe",
        provider_subscription_id="sub_1",
    )
    assert again.changed is False
    assert again.subscription.pk == first.subscription.pk
    assert Subscription.objects.count() == 1
    assert Subscription.objects.get().plan_id == growth.pk  # a replay changes nothing
    assert SubscriptionChange.objects.count() == 1


def test_the_same_id_at_another_provider_is_another_subscription(member, other_member, growth):
    start(member.account, growth, provider="stripe", provider_subscription_id="same")
    start(other_member.account, growth, provider="creem", provider_subscription_id="same")
    assert Subscription.objects.count() == 2


def test_a_provider_id_of_another_account_is_a_conflict(member, other_member, growth):
    start(member.account, growth, provider_subscription_id="sub_1")
    before = subscription_rows()
    with pytest.raises(SubscriptionOwnerMismatch):
        start(other_member.account, growth, provider_subscription_id="sub_1")
    assert subscription_rows() == before


def test_a_second_current_subscription_is_refused_without_replace(member, growth, pro):
    current = start(member.account, growth)
    before = subscription_rows()
    with pytest.raises(SubscriptionExists) as exc:
        start(member.account, pro)
    assert exc.value.status_code == 409
    assert exc.value.details == {"subscription_id": str(current.pk), "plan": "growth", "status": "active"}
    assert subscription_rows() == before


def test_replace_current_cancels_the_old_one_and_keeps_its_plan_as_previous(member, growth, pro):
    old = start(member.account, growth)
    new = start(member.account, pro, replace_current=True)
    old.refresh_from_db()
    assert old.status == "canceled" and old.ended_at is not None and old.canceled_at is not None
    assert (new.status, new.plan_id, new.previous_plan_id) == ("active", pro.pk, growth.pk)
    assert changes_of(old) == [
        ("started", None, "growth", "", "active"),
        ("replaced", "growth", None, "active", "canceled"),
    ]
    assert changes_of(new) == [("started", "growth", "pro", "", "active")]
    assert subscription_current(account_id=member.account.pk).pk == new.pk
    state = account_plan_state(account_id=member.account.pk)
    assert (state.current_plan, state.previous_plan) == ("pro", "growth")


def test_replacing_with_the_same_plan_keeps_the_previous_plan(member, growth, pro):
    start(member.account, growth)
    second = start(member.account, pro, replace_current=True)  # growth -> pro
    third = start(member.account, pro, replace_current=True, provider="creem")  # pro again, new provider
    assert second.previous_plan_id == growth.pk
    assert third.previous_plan_id == growth.pk
    assert account_plan_state(account_id=member.account.pk).previous_plan == "growth"


def test_manual_subscriptions_need_no_provider_id_but_can_use_one_for_retries(member, other_member, growth):
    plain = subscription_start(
        account_id=member.account.pk, plan_id=growth.pk, billing_cycle="monthly", provider="manual"
    )
    assert plain.subscription.provider_subscription_id == ""
    keyed = [
        subscription_start(
            account_id=other_member.account.pk,
            plan_id=growth.pk,
            billing_cycle="monthly",
            provider="manual",
            provider_subscription_id="grant-42",
        )
        for _ in range(2)
    ]
    assert [r.changed for r in keyed] == [True, False]
    assert keyed[0].subscription.pk == keyed[1].subscription.pk


@pytest.mark.parametrize("provider", ["stripe", "creem"])
def test_stripe_and_creem_need_a_provider_subscription_id(member, growth, provider):
    with pytest.raises(ValueError, match="provider_subscription_id"):
        subscription_start(
            account_id=member.account.pk, plan_id=growth.pk, billing_cycle="monthly", provider=provider
        )
    assert Subscription.objects.count() == 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"billing_cycle": "weekly"}, "billing_cycle"),
        ({"provider": "paypal"}, "provider"),
        ({"status": "canceled"}, "status"),
        ({"status": "expired"}, "status"),
        ({"current_period_start": datetime(2026, 1, 1)}, "current_period_start"),  # naive
        ({"as_of": "2026-01-01"}, "as_of"),
        ({"provider_subscription_id": "has space"}, "provider_subscription_id"),
        ({"provider_customer_id": 42}, "provider_customer_id"),
        ({"cancel_at_period_end": "yes"}, "cancel_at_period_end"),
    ],
)
def test_start_refuses_arguments_of_the_wrong_kind(member, growth, overrides, message):
    args = {"billing_cycle": "monthly", "provider": "stripe", "provider_subscription_id": "sub_1"} | overrides
    with pytest.raises(ValueError, match=message):
        subscription_start(account_id=member.account.pk, plan_id=growth.pk, **args)
    assert Subscription.objects.count() == 0


def test_a_period_ending_before_it_starts_is_invalid_input(member, growth):
    with pytest.raises(InvalidInput) as exc:
        start(member.account, growth, current_period_start=T0, current_period_end=T0)
    assert "current_period_end" in exc.value.details
    assert Subscription.objects.count() == 0


def test_start_needs_a_plan_of_the_accounts_platform(member, outsider, growth):
    foreign = make_plan(outsider.platform, "foreign")
    for plan_id in (foreign.pk, "not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        with pytest.raises(PlanNotFound):
            subscription_start(
                account_id=member.account.pk, plan_id=plan_id, billing_cycle="monthly", provider="manual"
            )
    for account_id in ("nope", "00000000-0000-0000-0000-000000000000"):
        with pytest.raises(AccountNotFound):
            subscription_start(
                account_id=account_id, plan_id=growth.pk, billing_cycle="monthly", provider="manual"
            )
    assert Subscription.objects.count() == 0


def test_an_inactive_plan_can_still_be_started(member, growth):
    """The provider may have charged for a plan that was withdrawn between checkout and the webhook."""
    from subscriptions.services import plan_update

    plan_update(plan_id=growth.pk, is_active=False)
    assert start(member.account, growth).plan_id == growth.pk


def test_a_trialing_start_counts_as_free_trial(member, growth):
    start(member.account, growth, status="trialing", trial_end=T0)
    state = account_plan_state(account_id=member.account.pk)
    assert (state.current_plan, state.free_trial) == ("growth", True)


def test_starting_again_after_an_end_comes_from_the_free_trial(member, growth, pro):
    old = start(member.account, growth)
    subscription_set_status(subscription_id=old.pk, status="canceled")
    new = start(member.account, pro)
    assert new.previous_plan_id is None
    state = account_plan_state(account_id=member.account.pk)
    assert (state.current_plan, state.previous_plan) == ("pro", "free_trial")


# --- change plan -----------------------------------------------------------------------------------------


def test_change_plan_keeps_the_plan_it_leaves_as_previous(member, growth, pro):
    sub = start(member.account, growth)
    result = subscription_change_plan(subscription_id=sub.pk, plan_id=pro.pk)
    assert result.changed is True
    sub.refresh_from_db()
    assert (sub.plan_id, sub.previous_plan_id, sub.billing_cycle) == (pro.pk, growth.pk, "monthly")
    assert account_plan_state(account_id=member.account.pk).previous_plan == "growth"

    subscription_change_plan(subscription_id=sub.pk, plan_id=growth.pk)  # and back
    sub.refresh_from_db()
    assert (sub.plan_id, sub.previous_plan_id) == (growth.pk, pro.pk)
    assert changes_of(sub)[1:] == [
        ("plan_changed", "growth", "pro", "active", "active"),
        ("plan_changed", "pro", "growth", "active", "active"),
    ]


def test_change_plan_by_provider_ids_and_billing_cycle(member, growth, pro):
    start(member.account, growth, provider_subscription_id="sub_9")
    subscription_change_plan(
        provider="stripe", provider_subscription_id="sub_9", plan_id=pro.pk, billing_cycle="yearly"
    )
    sub = Subscription.objects.get()
    assert (sub.plan_id, sub.billing_cycle) == (pro.pk, "yearly")


def test_changing_only_the_cycle_keeps_the_previous_plan(member, growth):
    sub = start(member.account, growth)
    subscription_change_plan(subscription_id=sub.pk, plan_id=growth.pk, billing_cycle="yearly")
    sub.refresh_from_db()
    assert (sub.billing_cycle, sub.previous_plan_id) == ("yearly", None)
    assert account_plan_state(account_id=member.account.pk).previous_plan == "free_trial"


def test_changing_to_the_same_plan_and_cycle_changes_nothing(member, growth):
    sub = start(member.account, growth)
    updated_at = Subscription.objects.get().updated_at
    result = subscription_change_plan(subscription_id=sub.pk, plan_id=growth.pk, billing_cycle="monthly")
    assert result.changed is False
    assert Subscription.objects.get().updated_at == updated_at
    assert SubscriptionChange.objects.count() == 1


def test_an_ended_subscription_cannot_change_plan(member, growth, pro):
    sub = start(member.account, growth)
    subscription_set_status(subscription_id=sub.pk, status="expired")
    before = subscription_rows()
    with pytest.raises(SubscriptionEnded):
        subscription_change_plan(subscription_id=sub.pk, plan_id=pro.pk)
    assert subscription_rows() == before


def test_change_plan_needs_a_plan_of_the_same_platform(member, outsider, growth):
    sub = start(member.account, growth)
    foreign = make_plan(outsider.platform, "foreign")
    with pytest.raises(PlanNotFound):
        subscription_change_plan(subscription_id=sub.pk, plan_id=foreign.pk)
    assert Subscription.objects.get().plan_id == growth.pk


@pytest.mark.parametrize(
    "ref",
    [
        {"subscription_id": "00000000-0000-0000-0000-000000000000"},
        {"subscription_id": "junk"},
        {"provider": "stripe", "provider_subscription_id": "sub_unknown"},
    ],
)
def test_an_unknown_subscription_is_not_found(growth, ref):
    with pytest.raises(SubscriptionNotFound):
        subscription_change_plan(plan_id=growth.pk, **ref)
    with pytest.raises(SubscriptionNotFound):
        subscription_set_status(status="canceled", **ref)


@pytest.mark.parametrize(
    "ref",
    [
        {},
        {"subscription_id": "x", "provider": "stripe", "provider_subscription_id": "sub_1"},
        {"provider": "stripe"},
        {"provider": "stripe", "provider_subscription_id": ""},
    ],
)
def test_the_subscription_is_named_one_way(growth, ref):
    with pytest.raises(ValueError):
        subscription_set_status(status="canceled", **ref)


# --- status ----------------------------------------------------------------------------------------------


def test_status_moves_between_current_states_and_records_each_change(member, growth):
    sub = start(member.account, growth, status="trialing")
    for status in ("active", "past_due", "active"):
        assert subscription_set_status(subscription_id=sub.pk, status=status).changed is True
    assert subscription_set_status(subscription_id=sub.pk, status="active").changed is False
    assert [c[3:] for c in changes_of(sub)] == [
        ("", "trialing"),
        ("trialing", "active"),
        ("active", "past_due"),
        ("past_due", "active"),
    ]


@pytest.mark.parametrize("status", ["canceled", "expired"])
def test_ending_sets_ended_at_and_puts_the_account_back_on_the_free_trial(member, growth, status):
    sub = start(member.account, growth)
    subscription_set_status(subscription_id=sub.pk, status=status)
    sub.refresh_from_db()
    assert sub.status == status and sub.ended_at is not None
    assert (sub.canceled_at is not None) == (status == "canceled")
    assert subscription_current(account_id=member.account.pk) is None
    state = account_plan_state(account_id=member.account.pk)
    assert (state.current_plan, state.previous_plan, state.free_trial) == ("free_trial", "growth", True)


def test_ended_is_final_but_repeating_it_is_a_no_op(member, growth):
    sub = start(member.account, growth)
    subscription_set_status(subscription_id=sub.pk, status="canceled", canceled_at=T0)
    before = subscription_rows()
    assert subscription_set_status(subscription_id=sub.pk, status="canceled").changed is False
    for status in ("active", "trialing", "past_due", "expired"):
        with pytest.raises(SubscriptionEnded):
            subscription_set_status(subscription_id=sub.pk, status=status)
    assert subscription_rows() == before
    assert Subscription.objects.get().canceled_at == T0


def test_a_renewal_updates_the_period_without_a_status_change(member, growth):
    sub = start(member.account, growth, current_period_start=T0, current_period_end=T0 + timedelta(days=31))
    result = subscription_set_status(
        subscription_id=sub.pk,
        status="active",
        current_period_start=T0 + timedelta(days=31),
        current_period_end=T0 + timedelta(days=59),
        cancel_at_period_end=True,
    )
    assert result.changed is True
    sub.refresh_from_db()
    assert (sub.current_period_start, sub.current_period_end) == (
        T0 + timedelta(days=31),
        T0 + timedelta(days=59),
    )
    assert sub.cancel_at_period_end is True
    assert SubscriptionChange.objects.filter(kind=ChangeKind.STATUS_CHANGED).count() == 0


def test_a_period_ending_before_it_starts_is_refused_on_update(member, growth):
    sub = start(member.account, growth, current_period_start=T0, current_period_end=T0 + timedelta(days=31))
    with pytest.raises(InvalidInput):
        subscription_set_status(subscription_id=sub.pk, status="active", current_period_end=T0)
    assert Subscription.objects.get().current_period_end == T0 + timedelta(days=31)


def test_events_older_than_the_last_applied_are_ignored(member, growth, pro):
    """Out of order: the cancellation (t2) arrives before an earlier update (t1)."""
    sub = start(member.account, growth, as_of=T0)
    t1, t2 = T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)
    assert subscription_set_status(subscription_id=sub.pk, status="canceled", as_of=t2).changed is True
    late = subscription_set_status(subscription_id=sub.pk, status="active", as_of=t1)
    assert late.changed is False
    assert subscription_change_plan(subscription_id=sub.pk, plan_id=pro.pk, as_of=t1).changed is False
    sub.refresh_from_db()
    assert (sub.status, sub.plan_id, sub.synced_at) == ("canceled", growth.pk, t2)


def test_events_at_or_after_the_last_applied_are_applied(member, growth, pro):
    sub = start(member.account, growth, as_of=T0)
    assert subscription_change_plan(subscription_id=sub.pk, plan_id=pro.pk, as_of=T0).changed is True
    assert (
        subscription_set_status(
            subscription_id=sub.pk, status="past_due", as_of=T0 + timedelta(seconds=1)
        ).changed
        is True
    )
    sub.refresh_from_db()
    assert (sub.plan_id, sub.status, sub.synced_at) == (pro.pk, "past_due", T0 + timedelta(seconds=1))


# --- the database's own guarantees ------------------------------------------------------------------------


def test_postgres_refuses_a_second_current_subscription(member, growth):
    sub = start(member.account, growth)
    with pytest.raises(IntegrityError), transaction.atomic():
        Subscription.objects.create(
            account=member.account, plan=growth, status="past_due", billing_cycle="monthly", provider="manual"
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        Subscription.objects.filter(pk=sub.pk).update(status="canceled")  # ended without ended_at
    with pytest.raises(IntegrityError), transaction.atomic():
        Subscription.objects.filter(pk=sub.pk).update(previous_plan=growth)  # previous == plan
    with pytest.raises(IntegrityError), transaction.atomic():
        Subscription.objects.create(
            account=member.account,
            plan=growth,
            status="canceled",
            billing_cycle="monthly",
            provider="stripe",
            ended_at=T0,
        )  # no provider id


# --- concurrency -----------------------------------------------------------------------------------------


def _race(n: int, work) -> list:
    barrier, results = threading.Barrier(n), [None] * n

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except Exception as exc:
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.django_db(transaction=True)
def test_concurrent_starts_leave_one_current_subscription():
    platform = make_platform("race")
    account = make_member(platform, "racer").account
    plans = [make_plan(platform, f"p{i}") for i in range(4)]
    results = _race(4, lambda i: start(account, plans[i], provider_subscription_id=f"sub_race_{i}"))
    won = [r for r in results if isinstance(r, Subscription)]
    lost = [r for r in results if isinstance(r, SubscriptionExists)]
    assert (len(won), len(lost)) == (1, 3), results
    assert Subscription.objects.filter(account=account).count() == 1
    assert subscription_current(account_id=account.pk).pk == won[0].pk


@pytest.mark.django_db(transaction=True)
def test_concurrent_replays_of_one_start_create_it_once():
    platform = make_platform("race")
    account = make_member(platform, "racer").account
    plan = make_plan(platform, "solo")

    def work(_: int):
        return subscription_start(
            account_id=account.pk,
            plan_id=plan.pk,
            billing_cycle="monthly",
            provider="stripe",
            provider_subscription_id="sub_dup",
        )

    results = _race(4, work)
    assert all(not isinstance(r, Exception) for r in results), results
    assert sorted(r.changed for r in results) == [False, False, False, True]
    assert len({r.subscription.pk for r in results}) == 1
    assert Subscription.objects.count() == 1
    assert SubscriptionChange.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_status_changes_record_each_transition_once():
    platform = make_platform("race")
    account = make_member(platform, "racer").account
    sub = start(account, make_plan(platform, "solo"))
    results = _race(4, lambda i: subscription_set_status(subscription_id=sub.pk, status="canceled"))
    assert sorted(r.changed for r in results) == [False, False, False, True]
    assert SubscriptionChange.objects.filter(kind=ChangeKind.STATUS_CHANGED).count() == 1
    assert Subscription.objects.get().status == SubscriptionStatus.CANCELED


# --- lookups for the payment webhooks ---------------------------------------------------------------------


def test_a_provider_price_or_product_leads_to_its_plan(platform, outsider, growth):
    from subscriptions.selectors import (
        plan_for_creem_product,
        plan_for_stripe_price,
        subscription_by_provider,
    )
    from subscriptions.services import plan_update

    plan_update(plan_id=growth.pk, creem_product_id="prod_growth")
    assert plan_for_stripe_price(platform_id=platform.pk, price_id="price_growth_m") == (growth, "monthly")
    assert plan_for_stripe_price(platform_id=platform.pk, price_id="price_growth_y") == (growth, "yearly")
    assert plan_for_stripe_price(platform_id=outsider.platform.pk, price_id="price_growth_m") is None
    assert plan_for_stripe_price(platform_id=platform.pk, price_id="") is None
    assert plan_for_creem_product(platform_id=platform.pk, product_id="prod_growth") == growth
    assert plan_for_creem_product(platform_id=platform.pk, product_id="") is None
    assert (growth.stripe_price_for("yearly"), growth.price_for("yearly")) == ("price_growth_y", 29000)
    sub = start(make_member(platform, "nora").account, growth, provider_subscription_id="sub_look")
    assert subscription_by_provider(provider="stripe", provider_subscription_id="sub_look") == sub
    assert subscription_by_provider(provider="creem", provider_subscription_id="sub_look") is None
    assert subscription_by_provider(provider="manual", provider_subscription_id="") is None


@pytest.mark.django_db(transaction=True)
def test_two_accounts_racing_for_one_provider_id_get_one_subscription():
    platform = make_platform("race")
    accounts = [make_member(platform, f"racer{i}").account for i in range(4)]
    plan = make_plan(platform, "solo")
    results = _race(4, lambda i: start(accounts[i], plan, provider_subscription_id="sub_contested"))
    assert sum(isinstance(r, Subscription) for r in results) == 1, results
    assert sum(isinstance(r, SubscriptionOwnerMismatch) for r in results) == 3, results
    assert Subscription.objects.count() == 1 and SubscriptionChange.objects.count() == 1
