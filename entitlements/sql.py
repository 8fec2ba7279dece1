"""The raw SQL of the entitlements app: the two statements a seat-funded request adds to the usage path, each one
prepared round trip (``entitlements.funding``). They read and write; every rule (tiers, windows, budgets) is
decided in Python between them.

- ``SEATS_READ``: for credit accounts, their member's seat (the plan's tier, budgets and overage, the platform's
  time zone) and their latest weekly and session windows, with the catalogue's tiers of the models asked about.
- ``CHARGES_WRITE``: the windows' new totals upserted (a new window inserted, an open one updated: the totals
  were read under the member's account lock, so they are exact) and the ``SeatCharge`` rows inserted,
  referencing them."""

from __future__ import annotations

from accounts.models import Platform
from credits.models import CreditAccount
from entitlements.models import AIPlan, AIPlanModel, SeatAssignment, SeatCharge, SeatWindow

_WINDOW = SeatWindow._meta.db_table
_CHARGE = SeatCharge._meta.db_table


def _latest_window(alias: str, kind: str) -> str:
    """The member's latest window of ``kind`` (the unique index (platform, user, kind, starts_at), read backwards:
    one row whatever the member's history); ``entitlements.funding.seats_read`` decides whether it is still open."""
    return (
        f"LEFT JOIN LATERAL (SELECT starts_at, ends_at, spent, reserved FROM {_WINDOW} "
        f"WHERE platform_id = a.platform_id AND user_id = a.user_id AND kind = '{kind}' "
        f"ORDER BY starts_at DESC LIMIT 1) {alias} ON true"
    )


SEATS_READ = (
    f"SELECT c.id, a.platform_id, a.user_id, p.id, p.slug, p.tier, p.weekly_budget, p.session_budget, p.overage, "
    f"pl.time_zone, wk.starts_at, wk.ends_at, wk.spent, wk.reserved, ss.starts_at, ss.ends_at, ss.spent, ss.reserved, "
    f"(SELECT array_agg(m.model || ' ' || m.tier) FROM {AIPlanModel._meta.db_table} m "
    f"JOIN {AIPlan._meta.db_table} mp ON mp.id = m.plan_id WHERE mp.is_active AND m.model = ANY(%(models)s)) "
    f"FROM {CreditAccount._meta.db_table} c "
    f"JOIN {SeatAssignment._meta.db_table} a ON a.platform_id = c.platform_id AND a.user_id = c.user_id "
    f"JOIN {AIPlan._meta.db_table} p ON p.id = a.ai_plan_id JOIN {Platform._meta.db_table} pl ON pl.id = a.platform_id "
    f"{_latest_window('wk', 'weekly')} {_latest_window('ss', 'session')} "
    f"WHERE c.id = ANY(%(accounts)s)"
)

_CHARGE_COLUMNS = (
    "id", "platform_id", "user_id", "ai_plan_id", "kind", "spent_delta", "reserved_delta", "weekly_budget",
    "session_budget", "weekly_spent_after", "session_spent_after", "usage_event_id", "hold_id", "model", "created_at",
)
_CHARGE_TYPES = (
    "uuid", "int", "int", "uuid", "text", "numeric", "numeric", "numeric", "numeric", "numeric", "numeric", "uuid",
    "uuid", "text", "timestamptz",
)
# The charges' arrays (``_CHARGE_COLUMNS``, then each charge's weekly and session window starts), then the windows'.
CHARGES_WRITE = (
    f"WITH v AS (SELECT * FROM unnest(%s::int[], %s::int[], %s::text[], %s::timestamptz[], %s::timestamptz[], "
    f"%s::numeric[], %s::numeric[]) AS v(platform_id, user_id, kind, starts_at, ends_at, spent, reserved)), "
    f"win AS (INSERT INTO {_WINDOW} AS w (platform_id, user_id, kind, starts_at, ends_at, spent, reserved, updated_at) "
    f"SELECT v.*, %s FROM v ORDER BY platform_id, user_id, kind, starts_at "
    f"ON CONFLICT (platform_id, user_id, kind, starts_at) DO UPDATE SET spent = EXCLUDED.spent, "
    f"reserved = EXCLUDED.reserved, updated_at = EXCLUDED.updated_at "
    f"RETURNING id, platform_id, user_id, kind, starts_at) "
    f"INSERT INTO {_CHARGE} ({', '.join(_CHARGE_COLUMNS)}, weekly_window_id, session_window_id) "
    f"SELECT {', '.join(f'c.{column}' for column in _CHARGE_COLUMNS)}, wk.id, ss.id FROM unnest("
    + ", ".join(f"%s::{t}[]" for t in _CHARGE_TYPES)
    + f") WITH ORDINALITY AS c({', '.join(_CHARGE_COLUMNS)}, n) "
    f"JOIN unnest(%s::timestamptz[], %s::timestamptz[]) WITH ORDINALITY AS s(week, session, n) USING (n) "
    f"JOIN win wk ON (wk.platform_id, wk.user_id, wk.kind, wk.starts_at) = (c.platform_id, c.user_id, 'weekly', s.week) "
    f"JOIN win ss ON (ss.platform_id, ss.user_id, ss.kind, ss.starts_at) = (c.platform_id, c.user_id, 'session', "
    f"s.session)"
)
