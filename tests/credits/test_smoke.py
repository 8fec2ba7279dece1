from decimal import Decimal

from credits.verification import ledger_verify
from credits.services import credits_debit
from tests.conftest import client_for


def test_member_sees_own_balance_after_a_debit(member):
    credits_debit(account_id=member.account.id, amount=Decimal("0.03"), description="AI call")
    response = client_for(member).get("/api/billing/account/")
    assert response.status_code == 200
    assert response.json()["available_credits"] == "99.97"
    assert ledger_verify(account=member.account).ok
