"""verify_ledger streams: accounts in batches, ledger rows in keyset-paged chunks. Whatever the batch and chunk sizes,
it finds what the one-account check finds; its progress bar goes to standard error only."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from credits.models import CreditAccount
from credits.verification import ledger_verify, ledger_verify_accounts
from credits.services import credits_debit, credits_grant
from tests.conftest import make_member

pytestmark = pytest.mark.django_db


@pytest.fixture
def ledgers(platform, other_platform):  # noqa: ANN001, ANN201
    members = [make_member(platform, f"m{i}") for i in range(4)] + [make_member(other_platform, "far")]
    for i, member in enumerate(members):
        for n in range(i * 3):  # 0, 3, 6, 9, 12 grants: chunk edges fall inside and between accounts
            credits_grant(account_id=member.account.id, amount=Decimal("1.5"), description=f"g{n}")
        if i:
            credits_debit(account_id=member.account.id, amount=Decimal("0.25"), description="use")
    return members


@pytest.mark.parametrize("per_batch, per_chunk", [(1, 1), (2, 3), (3, 5), (1000, 20_000)])
def test_any_batch_and_chunk_size_finds_what_the_one_account_check_finds(ledgers, per_batch, per_chunk):
    CreditAccount.objects.filter(pk=ledgers[2].account.id).update(balance=Decimal("99"))  # a stray UPDATE
    CreditAccount.objects.filter(pk=ledgers[4].account.id).update(count_add=1)
    seen = []

    streamed = list(ledger_verify_accounts(CreditAccount.objects.all(), on_rows=seen.append,
                                           accounts_per_batch=per_batch, rows_per_chunk=per_chunk))

    accounts = list(CreditAccount.objects.order_by("pk"))
    assert [c.account_id for c in streamed] == [a.pk for a in accounts]
    assert [c.problems for c in streamed] == [ledger_verify(account=a).problems for a in accounts]
    assert {c.account_id for c in streamed if not c.ok} == {ledgers[2].account.id, ledgers[4].account.id}
    assert sum(seen) == sum(a.last_sequence for a in accounts)
    assert max(seen) <= per_chunk


def test_the_progress_bar_goes_to_standard_error_and_the_report_is_unchanged(ledgers):
    out, err = StringIO(), StringIO()
    call_command("verify_ledger", "--progress", "on", "-v", "2", stdout=out, stderr=err)
    lines = out.getvalue().splitlines()
    assert lines[0] == f"checked {CreditAccount.objects.count()} account(s), 0 with problems"
    assert lines[1].startswith(f"{sum(a.last_sequence for a in CreditAccount.objects.all())} ledger row(s) in ")


def test_problems_are_reported_with_the_bar_on(ledgers):
    CreditAccount.objects.filter(pk=ledgers[1].account.id).update(reserved=Decimal("1"))
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match="ledger invariants violated"):
        call_command("verify_ledger", "--progress", "on", stdout=out, stderr=err)
    assert f"{ledgers[1].account.id}: reserved 1" in err.getvalue()
    assert out.getvalue().strip().endswith("1 with problems")
