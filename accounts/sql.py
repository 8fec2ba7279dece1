"""The raw SQL of the accounts app: token authentication's one statement (``user_by_token_statement``: the user
and their memberships, on every API request), and the memberships of a user with their platforms (a session
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


def user_by_token_statement(user_columns: list[str], user_table: str, user_pk: str) -> str:
    """The statement of token authentication: the user's columns (``user_columns``) and, last, their memberships
    (``memberships_of_user_json``) for the token ``%s``."""
    return (
        f"SELECT {', '.join('u.' + column for column in user_columns)}, {memberships_of_user_json(f'u.{user_pk}')} "
        f"FROM authtoken_token t JOIN {user_table} u ON u.{user_pk} = t.user_id WHERE t.key = %s"
    )
