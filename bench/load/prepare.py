"""The steps of ``make load`` around locust (README, "Load test"):

    prepare.py free PORT
        fails when something already listens on 127.0.0.1:PORT (so that no other server answers the load)
    prepare.py wait URL --pid PID [--timeout 120]
        waits until URL (the server's /readyz) answers 200, failing early if process PID (the server) died
    prepare.py users OUT [--platform demo] [--users 20] [--orders 35]
        makes the load members ready in the platform and writes what locustfile.py needs to OUT (JSON, mode 600)
    prepare.py check OUT
        after the run: every top-up order of the run (in OUT) credited at most once, each paid one by exactly one
        ``add`` row and one processed event, none of the others credited; exits 1 otherwise

``users`` runs with the project's settings, on the database the server uses (the embedded PostgreSQL, or
DATABASE_URL). Through the services, as an operator would with ``add_member``/``api_token issue``:

- the platform's demo data (``seed_demo``, ``seed_demo_seats``, ``seed_demo_billing``) when the platform or its rate
  card is missing, so that a fresh clone works; an existing demo is left as it is (its tokens stay valid);
- ``load-backend``, an admin: the platform's backend, which records usage and holds for the members;
- ``load-1`` .. ``load-N``, members, each with its credit account topped up to at least 500.00 (a grant, keyed by
  the run: never twice);
- for each of them a new API token named ``load``, scoped to the platform, expiring in a day; the previous run's
  ``load`` tokens are revoked (keys are shown once);
- ``--orders`` pending Stripe top-up orders per member, as a Stripe checkout leaves them (``bench/webhooks.py`` makes
  them the same way): the webhook task pays them with signed ``checkout.session.completed`` events (about one in
  four of them in a run). Only the orders of this run are in OUT; the rest stay pending, like abandoned checkouts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOKEN_NAME = "load"
BACKEND = "load-backend"
FLOOR = Decimal("500.00")  # every member starts a run with at least this much available
ORDER_AMOUNT = Decimal("25.00")
APP_URL = "https://app.load.test/billing"


def free(port: int) -> int:
    import socket

    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", port)) == 0:
            print(f"127.0.0.1:{port} is taken: choose another LOAD_PORT", file=sys.stderr)
            return 1
    return 0


def wait(url: str, pid: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            print(f"the server (pid {pid}) exited before it was ready; see its log", file=sys.stderr)
            return 1
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    print(f"ready: {url}")
                    return 0
        except urllib.error.HTTPError as exc:
            last = f"{exc.code} {exc.read()[:200]!r}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.5)
    print(f"{url} not ready after {timeout:.0f} s: {last}", file=sys.stderr)
    return 1


def users(out: Path, platform_key: str, n: int, orders_per_member: int) -> int:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_service.settings")
    import io

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import transaction
    from django.utils import timezone

    from accounts.models import Role
    from accounts.selectors import platform_get
    from accounts.services import api_token_issue, api_token_revoke, member_add
    from credits.models import CreditAccount, ModelPrice
    from credits.selectors import account_for
    from credits.services import credits_grant
    from payments.models import Channel, Order, OrderStatus, OrderType

    platform = platform_get(platform_key=platform_key)
    if platform is None or not ModelPrice.objects.filter(platform=platform).exists():
        if platform_key != "demo":
            print(f"no platform {platform_key!r} with a rate card", file=sys.stderr)
            return 1
        for command in ("seed_demo", "seed_demo_seats", "seed_demo_billing"):
            call_command(command, stdout=io.StringIO())
        platform = platform_get(platform_key=platform_key)

    run = uuid.uuid4().hex[:12]
    now = timezone.now()
    members = []
    names = [(BACKEND, Role.ADMIN)] + [(f"load-{i}", Role.MEMBER) for i in range(1, n + 1)]
    keys = {}
    for username, role in names:
        with transaction.atomic():
            membership, _ = member_add(platform=platform, username=username, role=role,
                                       email=f"{username}@load.test", issue_token=False)
            for old in membership.user.api_tokens.filter(name=TOKEN_NAME, revoked_at__isnull=True):
                api_token_revoke(token=old)
            keys[username] = api_token_issue(user=membership.user, platform=platform, name=TOKEN_NAME, now=now,
                                             expires_at=now + timedelta(days=1)).key
        if role == Role.ADMIN:
            continue
        account = account_for(platform=platform, user=membership.user)
        if account.available < FLOOR:
            credits_grant(account_id=account.id, amount=FLOOR - account.available, description="Load test credits",
                          idempotency_key=f"load:{run}")
        members.append({"username": username, "key": keys[username], "account_id": str(account.id),
                        "user_id": membership.user.pk})

    orders = []
    for m in members:
        for i in range(orders_per_member):
            session = f"cs_load_{run}_{m['username']}_{i}"
            orders.append(Order(
                id=uuid.uuid4(), platform=platform, account_id=m["account_id"], user_id=m["user_id"],
                type=OrderType.TOP_UP, channel=Channel.STRIPE, status=OrderStatus.PENDING, currency="USD",
                amount_usd=ORDER_AMOUNT, credits=ORDER_AMOUNT, success_url=APP_URL, cancel_url=APP_URL,
                checkout_url=f"https://checkout.stripe.test/c/pay/{session}", provider_checkout_id=session))
    Order.objects.bulk_create(orders, batch_size=2000)
    by_account: dict[str, list[dict]] = {}
    for order in orders:
        by_account.setdefault(str(order.account_id), []).append(
            {"id": str(order.id), "session": order.provider_checkout_id, "cents": int(order.amount_usd * 100)})
    for m in members:
        m["orders"] = by_account.get(m["account_id"], [])
        del m["user_id"]

    data = {"run": run, "platform_key": platform_key, "backend_key": keys[BACKEND], "members": members}
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    accounts = CreditAccount.objects.filter(platform=platform).count()
    print(f"load users ready in {platform_key!r}: {BACKEND} (admin) and {len(members)} member(s), "
          f"{len(orders)} pending top-up order(s), run {run}; the platform has {accounts} account(s) -> {out}")
    return 0


def check(path: Path) -> int:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_service.settings")
    import django

    django.setup()
    from django.db import connection

    data = json.loads(path.read_text())
    order_ids = [o["id"] for m in data["members"] for o in m["orders"]]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT o.status,
                   (SELECT count(*) FROM credits_ledger_entry l
                     WHERE l.account_id = o.account_id AND l.transaction_type = 'add'
                       AND l.idempotency_key = 'order:' || o.id::text) AS adds,
                   (SELECT count(*) FROM payments_webhookevent e
                     WHERE e.order_id = o.id AND e.status = 'processed') AS events,
                   count(*)
              FROM payments_order o WHERE o.id = ANY(%s::uuid[])
             GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
            """,
            [order_ids],
        )
        groups = cursor.fetchall()
    paid = sum(n for status, _, _, n in groups if status == "paid")
    good = sum(n for status, adds, events, n in groups if status == "paid" and adds == 1 and events == 1)
    wrong = sum(n for status, adds, _, n in groups if adds > 1 or (status != "paid" and adds))
    print(f"top-up orders of this run: {len(order_ids):,}; " + ", ".join(
        f"{status} with {adds} add row(s) and {events} processed event(s): {n:,}" for status, adds, events, n in groups))
    print(f"paid by the webhooks {paid:,}, each credited exactly once {good:,}; credited twice or while unpaid: "
          f"{wrong} -> {'OK' if good == paid and not wrong else 'MISMATCH'}")
    return 0 if good == paid and not wrong else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    steps = parser.add_subparsers(dest="step", required=True)
    f = steps.add_parser("free")
    f.add_argument("port", type=int)
    w = steps.add_parser("wait")
    w.add_argument("url")
    w.add_argument("--pid", type=int, required=True)
    w.add_argument("--timeout", type=float, default=120)
    u = steps.add_parser("users")
    u.add_argument("out", type=Path)
    u.add_argument("--platform", default="demo")
    u.add_argument("--users", type=int, default=20)
    u.add_argument("--orders", type=int, default=35,
                   help="pending top-up orders per member (make load: LOAD_SECONDS / 2 + 5, more than a run pays)")
    c = steps.add_parser("check")
    c.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.step == "check":
        return check(args.out)
    if args.step == "free":
        return free(args.port)
    if args.step == "wait":
        return wait(args.url, args.pid, args.timeout)
    if args.users < 1:
        parser.error("--users must be at least 1")
    return users(args.out, args.platform, args.users, args.orders)


if __name__ == "__main__":
    sys.exit(main())
