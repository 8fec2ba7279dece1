"""The raw SQL of the accounts app: token authentication's one statement (``user_by_token_statement``: the user,
their memberships and the token, on every API request; ``user_by_id_statement``, the same by user id, for a JWT), and the memberships of a user with their platforms (a session
user's are read by ``MEMBERSHIPS_OF_USER``, prepared). Raw because the JSON aggregate inside authentication's
own statement is not something the ORM can say, and the two must return the same rows, in the same order."""

from __future__ import annotations

# The columns of a membership row, then of its platform (``accounts.selectors._membership`` reads them so).
MEMBERSHIP_COLUMNS = "m.id, m.platform_id, m.user_id, m.role, m.created_at, p.id, p.platform_key, p.name, p.created_at"
_FROM = "FROM accounts_membership m JOIN accounts_platform p ON p.id = m.platform_id"

MEMBERSHIPS_OF_USER = f"SELECT {MEMBERSHIP_COLUMNS} {_FROM} WHERE m.user_id = %s ORDER BY m.platform_id"


def memberships_of_user_json(user_id_sql: str) -> str:
    """A SQL expression: the memberships of the user whose id is ``user_id_sql``, as a JSON array of
    ``MEMBERSHIPS_OF_USER``'s rows."""
    return (
        f"(SELECT coalesce(json_agg(json_build_array({MEMBERSHIP_COLUMNS}) ORDER BY m.platform_id), '[]') "
        f"{_FROM} WHERE m.user_id = {user_id_sql})"
    )


# What token authentication reads of the token, after the user's columns and memberships.
TOKEN_COLUMNS = "t.expires_at, t.revoked_at, tp.platform_key"


def user_by_token_statement(user_columns: list[str], user_table: str, user_pk: str) -> str:
    """The statement of token authentication: the user's columns (``user_columns``), their memberships
    (``memberships_of_user_json``), then ``TOKEN_COLUMNS``, for the token whose key's digest is ``%s``."""
    return (
        f"SELECT {', '.join('u.' + column for column in user_columns)}, {memberships_of_user_json(f'u.{user_pk}')}, "
        f"{TOKEN_COLUMNS} FROM accounts_apitoken t JOIN {user_table} u ON u.{user_pk} = t.user_id "
        "LEFT JOIN accounts_platform tp ON tp.id = t.platform_id WHERE t.digest = %s"
    )



def user_by_id_statement(user_columns: list[str], user_table: str, user_pk: str) -> str:
    """The statement of JWT authentication (``accounts.jwt``): what ``user_by_token_statement`` returns, for the
    user whose id is ``%s`` (a token's ``user_id`` claim). One statement per request, as a Token's."""
    return (
        f"SELECT {', '.join('u.' + column for column in user_columns)}, {memberships_of_user_json(f'u.{user_pk}')} "
        f"FROM {user_table} u WHERE u.{user_pk} = %s"
    )

# --- outbound webhooks (``accounts.outbound``) ------------------------------------------------------------------

# New events fanned out to the active endpoints of their platform subscribed to their type, in one statement; two
# workers never fan out one event twice (SKIP LOCKED, and a delivery is unique per event and endpoint).
OUTBOUND_FAN_OUT = (
    "WITH ev AS (UPDATE accounts_outboundevent e SET fanned_out = true FROM (SELECT id FROM accounts_outboundevent "
    "WHERE NOT fanned_out ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED) n WHERE e.id = n.id "
    "RETURNING e.id, e.platform_id, e.type, e.account_id) "
    "INSERT INTO accounts_outbounddelivery (event_id, endpoint_id, stream, status, attempts, next_attempt_at, "
    "last_error, created_at) SELECT ev.id, w.id, coalesce(ev.account_id::text, 'event:' || ev.id), 'pending', 0, "
    "%(now)s, '', %(now)s FROM ev JOIN accounts_webhookendpoint w ON w.platform_id = ev.platform_id AND w.active "
    "AND ev.type = ANY(w.events) ON CONFLICT (event_id, endpoint_id) DO NOTHING"
)
# Pending deliveries to active endpoints that head their stream (no earlier pending delivery of the same endpoint
# and account): the only ones that may be sent.
_HEADS = (
    "c.status = 'pending' AND EXISTS (SELECT 1 FROM accounts_webhookendpoint w WHERE w.id = c.endpoint_id AND "
    "w.active) AND NOT EXISTS (SELECT 1 FROM accounts_outbounddelivery p WHERE p.endpoint_id = c.endpoint_id AND "
    "p.stream = c.stream AND p.status = 'pending' AND p.event_id < c.event_id)"
)
# The deliveries due now that head their stream (no earlier pending delivery of the same endpoint and account),
# leased until %(lease_until)s: a worker sends them without holding a lock, and one that dies leaves them to be
# claimed again when the lease ends (at least once). Their ids, in event order.
OUTBOUND_CLAIM = (
    "UPDATE accounts_outbounddelivery d SET next_attempt_at = %(lease_until)s FROM (SELECT c.id FROM "
    f"accounts_outbounddelivery c WHERE {_HEADS} AND c.next_attempt_at <= %(now)s ORDER BY c.event_id "
    "LIMIT %(limit)s FOR UPDATE OF c SKIP LOCKED) pick WHERE d.id = pick.id RETURNING d.id, d.event_id"
)
# When the soonest of those is due (NULL: none pending): deliveries waiting behind an earlier one do not count.
OUTBOUND_NEXT_DUE = f"SELECT min(c.next_attempt_at) FROM accounts_outbounddelivery c WHERE {_HEADS}"
