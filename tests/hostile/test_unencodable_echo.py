"""A response can always be written: bad input that is echoed back (an unknown field's name, a refused choice)
may hold a lone surrogate that UTF-8 cannot encode, and responses are ASCII JSON with escapes, so it is answered
as the 400 it is. The regression: a batch whose second event carried the field "\\ud800" recorded the first
event, then answered 500 while writing the response."""

from __future__ import annotations

import json

import pytest

from credits.models import LedgerEntry, UsageEvent
from tests.api_helpers import error_of, full_state, post_json
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


def _event(account, request_id: str, extra: str = "") -> str:  # noqa: ANN001
    return ('{"account_id": "%s", "request_id": "%s", "endpoint": "/x", "amount": "1.00"%s}'
            % (account.id, request_id, extra))


def test_a_batch_answers_what_it_recorded_when_another_event_echoes_a_surrogate(owner, member):
    body = '{"events": [%s, %s]}' % (_event(member.account, "ok-1"), _event(member.account, "bad-1", ', "\\ud800": 1'))
    response = post_json(client_for(owner), "/api/billing/usage/batch/", body)
    assert response.status_code == 200
    results = json.loads(response.content)["results"]
    assert [r["status"] for r in results] == ["recorded", "rejected"]
    assert UsageEvent.objects.filter(account=member.account).count() == 1
    assert LedgerEntry.objects.filter(account=member.account, transaction_type="subtract").count() == 1


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/billing/usage/", lambda m: _event(m.account, "u-1", ', "\\ud800": 1')),
        ("/api/billing/reservations/", lambda m: '{"account_id": "%s", "amount": "1", "request_id": "h", '
                                                 '"\\ud800": 1}' % m.account.id),
        ("/api/billing/usage/batch/", lambda m: '{"events": [%s], "\\udc00": 1}' % _event(m.account, "b-1")),
        ("/api/billing/admin/plans/", lambda m: '{"slug": "p", "\\ud800": 1}'),
        ("/api/billing/checkout/", lambda m: '{"channel": "\\ud800", "type": "top_up", "amount": "5"}'),
        ("/api/billing/admin/credits/manual/", lambda m: '{"account_id": "\\ud800", "amount": "1", '
                                                         '"description": "x"}'),
    ],
)
def test_a_surrogate_echoed_in_an_error_is_a_400(owner, member, path, body):
    before = full_state()
    error_of(post_json(client_for(owner), path, body(member)), 400)
    assert full_state() == before
