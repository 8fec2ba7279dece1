"""Query parameters are never ignored: an operation takes exactly the ones its schema documents, refuses any
other with a 400 naming it, and refuses one the caller may not use (403).

The regression of hostile testing: ``?platform_key=`` of a platform the caller does not administer, or a
member's ``?account_id=``, were ignored on several endpoints, which then answered with the caller's own data; a
client that mistyped a filter got unfiltered data and could not tell."""

from __future__ import annotations

import pytest
from drf_spectacular.generators import SchemaGenerator

from tests.api_helpers import error_of, invalid_field
from tests.conftest import client_for, make_member, make_platform

pytestmark = pytest.mark.django_db

LISTS = [
    ("/api/billing/transactions/", "member"),
    ("/api/billing/admin/credits/transactions/", "owner"),
    ("/api/billing/reservations/", "owner"),
    ("/api/billing/orders/", "member"),
    ("/api/billing/plans/", "member"),
    ("/api/billing/admin/plans/", "owner"),
    ("/api/billing/admin/models/", "owner"),
]
READS = [
    ("/api/billing/account/", "member"),
    ("/api/billing/subscription/", "member"),
    ("/api/billing/summary/", "member"),
    ("/api/billing/usage/stats/", "member"),
    ("/api/billing/payment-method/", "member"),
]


@pytest.mark.parametrize(("path", "role"), LISTS + READS)
@pytest.mark.parametrize("param", ["transaction_typ", "acount_id", "page_sise", "format", "_"])
def test_an_unknown_query_parameter_is_a_400_naming_it(request, member, path, role, param):
    caller = request.getfixturevalue(role)
    response = client_for(caller).get(path, {param: "1"})
    error = invalid_field(response, param)
    assert error["details"][param] == ["Unknown query parameter for this operation."]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/billing/usage/"),
        ("post", "/api/billing/usage/batch/"),
        ("post", "/api/billing/reservations/"),
        ("post", "/api/billing/admin/credits/manual/"),
        ("post", "/api/billing/admin/models/"),
        ("post", "/api/billing/checkout/"),
        ("patch", "/api/billing/account/"),
    ],
)
def test_a_write_takes_no_query_parameter_and_writes_nothing(owner, member, method, path):
    from tests.api_helpers import full_state

    before = full_state()
    response = getattr(client_for(owner), method)(f"{path}?account_id={member.account.id}", {}, format="json")
    invalid_field(response, "account_id")
    assert full_state() == before


@pytest.mark.parametrize("path", ["/api/billing/usage/stats/", "/api/billing/summary/"])
def test_a_members_account_id_is_refused(member, other_member, path):
    error_of(client_for(member).get(path, {"account_id": str(other_member.account.id)}), 403, "admin_required")


@pytest.mark.parametrize("path", ["/api/billing/account/", "/api/billing/transactions/", "/api/billing/subscription/"])
def test_a_platform_key_the_caller_does_not_administer_is_refused(member, owner, outsider, path):
    error_of(client_for(member).get(path, {"platform_key": "acme"}), 403, "admin_required")
    # another platform: not theirs at all, or one where they are only a member
    error_of(client_for(owner).get(path, {"platform_key": "globex"}), 403, "not_a_member")
    make_member(make_platform("initech"), "olivia-too")
    error_of(client_for(owner).get(path, {"platform_key": "nosuch"}), 403, "not_a_member")
    assert client_for(owner).get(path, {"platform_key": "acme"}).status_code == 200


def test_every_documented_query_parameter_is_accepted(owner):
    """The schema is the contract: each GET operation's documented query parameters pass the check (their
    values may still be refused, but never as unknown)."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    client = client_for(owner)
    checked = 0
    for path, operations in schema["paths"].items():
        if "{" in path or not path.startswith("/api/billing/") or "get" not in operations:
            continue
        names = [p["name"] for p in operations["get"].get("parameters", []) if p["in"] == "query"]
        for name in names:
            response = client.get(path, {name: "x"})
            if response.status_code == 400:
                assert "Unknown query parameter for this operation." not in str(response.json()), (path, name)
            checked += 1
    assert checked >= 25


def test_a_method_the_endpoint_does_not_take_is_a_405_whatever_the_query(member):
    error_of(client_for(member).delete("/api/billing/transactions/?page=1"), 405, "method_not_allowed")


@pytest.mark.parametrize(
    ("path", "query"),
    [("/api/billing/transactions/", "page=x&page=1"), ("/api/billing/admin/credits/transactions/",
                                                      "account_id=a&account_id=b"),
     ("/api/billing/usage/stats/", "period=daily&period=monthly")],
)
def test_a_query_parameter_given_twice_is_a_400(owner, path, query):
    name = query.split("=")[0]
    error = invalid_field(client_for(owner).get(f"{path}?{query}"), name)
    assert error["details"][name] == ["Given more than once."]
