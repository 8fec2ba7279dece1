"""Coupons managed by owners and admins (``/api/billing/admin/coupons/``), and the Django admin's deactivate
action: shapes, the platform's scope, codes unique in any case, never deleted, bad input of every kind."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from payments.models import Coupon, CouponKind
from tests.api_helpers import error_of, invalid_field, post_json
from tests.conftest import client_for
from tests.payments.test_coupons_support import COUPONS_URL, make_coupon
from tests.subscriptions.conftest import make_plan

pytestmark = pytest.mark.django_db


def test_create_each_kind_and_read_it_back(admin):
    client = client_for(admin)
    response = post_json(client, COUPONS_URL, {
        "code": "Welcome10", "kind": "credits", "value": "10.5", "max_redemptions": 100,
        "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2027-01-01T00:00:00+02:00",
        "first_purchase_only": True,
    })
    assert response.status_code == 201, response.content
    body = response.json()
    coupon = Coupon.objects.get(pk=body["id"])
    assert response["Location"] == f"/api/billing/admin/coupons/{coupon.pk}/"
    assert body == {
        "id": str(coupon.pk), "code": "Welcome10", "kind": "credits", "value": "10.50", "max_redemptions": 100,
        "max_per_account": 1, "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2026-12-31T22:00:00Z",
        "plan_ids": [], "top_ups_only": False, "first_purchase_only": True, "active": True, "redemptions": 0,
        "created_at": body["created_at"], "updated_at": body["updated_at"],
    }
    assert coupon.platform_id == admin.platform.id and coupon.created_by_id == admin.user.id
    assert coupon.value == Decimal("10.5")
    percent = make_coupon(admin, "SPRING", "percent_off", "12.5", top_ups_only=True)
    assert (percent["value"], percent["top_ups_only"]) == ("12.50", True)
    amount = make_coupon(admin, "FIVEOFF", "amount_off", 5, max_per_account=3)
    assert (amount["value"], amount["max_per_account"], amount["max_redemptions"]) == ("5.00", 3, None)
    assert client.get(f"{COUPONS_URL}{amount['id']}/").json() == amount


def test_codes_are_unique_in_a_platform_whatever_their_case(admin, outsider):
    make_coupon(admin, "Save20")
    response = post_json(client_for(admin), COUPONS_URL, {"code": "SAVE20", "kind": "amount_off", "value": "1"})
    error = error_of(response, 409, "coupon_code_taken")
    assert error["details"] == {"code": "SAVE20"}
    assert Coupon.objects.count() == 1
    # another platform may have the same code
    make_coupon(outsider, "save20")
    assert Coupon.objects.count() == 2


def test_the_database_refuses_a_second_code_in_another_case(admin):
    from django.db import IntegrityError, transaction

    make_coupon(admin, "ABC")
    with pytest.raises(IntegrityError), transaction.atomic():
        Coupon.objects.create(platform=admin.platform, code="abc", kind=CouponKind.CREDITS, value=Decimal(1))


def test_list_filters_and_pages(admin, outsider):
    for i in range(3):
        make_coupon(admin, f"C{i}", "credits", "1")
    make_coupon(admin, "OFF", "amount_off", "2", active=False)
    make_coupon(outsider, "THEIRS", "credits", "1")
    client = client_for(admin)
    body = client.get(COUPONS_URL).json()
    assert body["count"] == 4 and {c["code"] for c in body["results"]} == {"C0", "C1", "C2", "OFF"}
    assert [c["code"] for c in client.get(COUPONS_URL, {"active": "false"}).json()["results"]] == ["OFF"]
    assert client.get(COUPONS_URL, {"kind": "credits"}).json()["count"] == 3
    page = client.get(COUPONS_URL, {"page_size": 2, "page": 2}).json()
    assert page["count"] == 4 and len(page["results"]) == 2
    invalid_field(client.get(COUPONS_URL, {"kind": "gift"}), "kind")
    invalid_field(client.get(COUPONS_URL, {"active": "yes"}), "active")
    invalid_field(client.get(COUPONS_URL, {"code": "C0"}), "code")  # an undocumented parameter


def test_another_platforms_coupon_is_not_found(admin, outsider):
    theirs = make_coupon(outsider, "THEIRS", "credits", "1")
    client = client_for(admin)
    for response in (client.get(f"{COUPONS_URL}{theirs['id']}/"),
                     client.patch(f"{COUPONS_URL}{theirs['id']}/", {"active": False}, format="json"),
                     client.put(f"{COUPONS_URL}{theirs['id']}/", {"value": "2"}, format="json")):
        error_of(response, 404, "coupon_not_found")
    assert Coupon.objects.get(pk=theirs["id"]).active is True
    error_of(client.get(f"{COUPONS_URL}not-a-uuid/"), 404, "coupon_not_found")


def test_members_may_not_manage_coupons(admin, member, owner):
    coupon = make_coupon(admin, "X1", "credits", "1")
    client = client_for(member)
    error_of(client.get(COUPONS_URL), 403)
    error_of(post_json(client, COUPONS_URL, {"code": "MINE", "kind": "credits", "value": "100"}), 403)
    error_of(client.get(f"{COUPONS_URL}{coupon['id']}/"), 403)
    error_of(client.patch(f"{COUPONS_URL}{coupon['id']}/", {"active": False}, format="json"), 403)
    assert Coupon.objects.count() == 1 and Coupon.objects.get().active
    assert client_for(owner).get(COUPONS_URL).status_code == 200  # owners may


def test_patch_put_and_never_delete(admin):
    coupon = make_coupon(admin, "EDIT", "percent_off", "10")
    client = client_for(admin)
    url = f"{COUPONS_URL}{coupon['id']}/"
    patched = client.patch(url, {"active": False, "max_redemptions": 5}, format="json")
    assert patched.status_code == 200, patched.content
    assert (patched.json()["active"], patched.json()["max_redemptions"], patched.json()["value"]) == (False, 5, "10.00")
    # PUT: value required; code and kind may be sent back unchanged, other omitted fields stay
    invalid_field(client.put(url, {"active": True}, format="json"), "value")
    put = client.put(url, patched.json() | {"value": "15", "active": True}, format="json")
    assert put.status_code == 200, put.content
    assert (put.json()["value"], put.json()["max_redemptions"], put.json()["active"]) == ("15.00", 5, True)
    invalid_field(client.patch(url, {"code": "OTHER"}, format="json"), "code")
    invalid_field(client.patch(url, {"kind": "amount_off"}, format="json"), "kind")
    invalid_field(client.patch(url, {"value": "101"}, format="json"), "value")  # checked against its kind
    deleted = client.delete(url)
    assert deleted.status_code == 405
    error_of(deleted, 405)
    stored = Coupon.objects.get(pk=coupon["id"])
    assert (stored.code, stored.kind, stored.value, stored.active) == ("EDIT", "percent_off", Decimal(15), True)


def test_plan_restrictions(admin, outsider):
    pro = make_plan(admin.platform, "pro")
    theirs = make_plan(outsider.platform, "pro")
    coupon = make_coupon(admin, "PROONLY", "amount_off", "3", plan_ids=[str(pro.pk)])
    assert coupon["plan_ids"] == [str(pro.pk)]
    assert list(Coupon.objects.get(pk=coupon["id"]).plans.all()) == [pro]
    client = client_for(admin)
    invalid_field(client.patch(f"{COUPONS_URL}{coupon['id']}/", {"plan_ids": [str(theirs.pk)]}, format="json"),
                  "plan_ids")
    invalid_field(client.patch(f"{COUPONS_URL}{coupon['id']}/", {"top_ups_only": True}, format="json"), "plan_ids")
    cleared = client.patch(f"{COUPONS_URL}{coupon['id']}/", {"plan_ids": []}, format="json")
    assert cleared.json()["plan_ids"] == []


GOOD = {"code": "GOOD", "kind": "percent_off", "value": "10"}
BAD_INPUT = [
    ("code", {"code": "x" * 65}),
    ("code", {"code": ""}),
    ("code", {"code": 12345}),
    ("code", {"code": None}),
    ("code", {"code": "SAVE 20"}),
    ("code", {"code": "ÉTÉ"}),
    ("code", {"code": "a\x00b"}),
    ("kind", {"kind": "gift"}),
    ("kind", {"kind": None}),
    ("value", {"value": "-5"}),
    ("value", {"value": "0"}),
    ("value", {"value": 0}),
    ("value", {"value": "NaN"}),
    ("value", {"value": "Infinity"}),
    ("value", {"value": "1e3"}),
    ("value", {"value": "100.01"}),
    ("value", {"value": "10.123"}),  # a percentage has 2 decimals
    ("value", {"value": "10.1234567"}),  # more than any amount has
    ("value", {"value": "99999999999999999999999"}),
    ("value", {"value": True}),
    ("value", {"kind": "amount_off", "value": "5.001"}),
    ("value", {"kind": "amount_off", "value": "1000000.01"}),
    ("value", {"kind": "credits", "value": "1000000000.000001"}),
    ("value", {"kind": "credits", "value": "-1"}),
    ("max_redemptions", {"max_redemptions": 0}),
    ("max_redemptions", {"max_redemptions": -1}),
    ("max_redemptions", {"max_redemptions": "3"}),
    ("max_redemptions", {"max_redemptions": 3.0}),
    ("max_redemptions", {"max_redemptions": True}),
    ("max_redemptions", {"max_redemptions": 10**12}),
    ("max_per_account", {"max_per_account": 0}),
    ("max_per_account", {"max_per_account": None}),
    ("valid_until", {"valid_from": "2026-05-01T00:00:00Z", "valid_until": "2026-04-30T23:59:59Z"}),
    ("valid_until", {"valid_from": "2026-05-01T00:00:00Z", "valid_until": "2026-05-01T00:00:00Z"}),
    ("valid_from", {"valid_from": "yesterday"}),
    ("valid_from", {"valid_from": "1999-12-31T23:59:59Z"}),
    ("plan_ids", {"plan_ids": ["not-a-uuid"]}),
    ("plan_ids", {"plan_ids": "all"}),
    ("plan_ids", {"plan_ids": ["00000000-0000-0000-0000-000000000001"]}),
    ("plan_ids", {"kind": "credits", "plan_ids": ["00000000-0000-0000-0000-000000000001"]}),
    ("top_ups_only", {"kind": "credits", "top_ups_only": True}),
    ("top_ups_only", {"top_ups_only": "yes"}),
    ("active", {"active": 1}),
    ("discount", {"discount": "5"}),  # unknown field
]


@pytest.mark.parametrize(("field", "change"), BAD_INPUT, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_INPUT)])
def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(admin, field, change):
    response = post_json(client_for(admin), COUPONS_URL, GOOD | change)
    invalid_field(response, field)
    assert Coupon.objects.count() == 0


def test_a_credits_coupon_may_have_many_decimals_and_a_json_number_is_exact(admin):
    response = post_json(client_for(admin), COUPONS_URL,
                         '{"code": "EXACT", "kind": "credits", "value": 0.000001}')
    assert response.status_code == 201, response.content
    assert Coupon.objects.get().value == Decimal("0.000001")


def test_a_body_that_is_not_an_object_is_a_400(admin):
    response = post_json(client_for(admin), COUPONS_URL, json.dumps(["code"]))
    error_of(response, 400)
    assert Coupon.objects.count() == 0


# --- the Django admin -----------------------------------------------------------------------------------------


def test_the_django_admin_lists_and_deactivates_through_the_service(admin):
    coupon = make_coupon(admin, "ADMINME", "credits", "1")
    make_coupon(admin, "KEEP", "credits", "1")
    operator = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    browser = Client()
    browser.force_login(operator)
    listing = browser.get("/admin/payments/coupon/", {"q": "adminme"})
    assert listing.status_code == 200 and b"ADMINME" in listing.content and b"KEEP" not in listing.content
    assert browser.get("/admin/payments/coupon/", {"active__exact": "1", "kind__exact": "credits"}).status_code == 200
    assert browser.get(f"/admin/payments/coupon/{coupon['id']}/change/").status_code == 200
    assert browser.get("/admin/payments/couponredemption/").status_code == 200
    done = browser.post("/admin/payments/coupon/", {"action": "deactivate", "_selected_action": [coupon["id"]]})
    assert done.status_code == 302
    assert Coupon.objects.get(pk=coupon["id"]).active is False
    assert Coupon.objects.get(code="KEEP").active is True


def test_a_platform_admin_without_staff_rights_cannot_use_the_django_admin(admin):
    browser = Client()
    browser.force_login(admin.user)
    assert browser.get("/admin/payments/coupon/").status_code == 302  # to the login page
