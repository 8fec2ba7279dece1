"""Operators' API tokens at the command line: issue (the key printed once), list, revoke."""

import json
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.models import ApiToken
from accounts.selectors import platform_get
from accounts.services import api_token_issue, api_token_revoke

MAX_DAYS = 3650


class Command(BaseCommand):
    help = ("API tokens: 'issue USERNAME' prints one JSON line with a new key (shown this once; --platform scopes it, "
            "--expires-in-days ends it), 'list' prints one JSON line per token (never a key), 'revoke ID...' revokes.")

    def add_arguments(self, parser):  # noqa: ANN001
        commands = parser.add_subparsers(dest="subcommand", required=True)
        issue = commands.add_parser("issue", help="Issue a token; its key is printed this once.")
        issue.add_argument("username")
        issue.add_argument("--platform", default=None, help="Scope it to this platform (the user must be a member).")
        issue.add_argument("--name", default="", help="What the token is for.")
        issue.add_argument("--expires-in-days", type=int, default=None)
        listing = commands.add_parser("list", help="Tokens, newest first.")
        listing.add_argument("--user", default=None, help="Only this user's.")
        listing.add_argument("--platform", default=None, help="Only tokens scoped to this platform.")
        listing.add_argument("--active", action="store_true", help="Only tokens neither revoked nor expired.")
        revoke = commands.add_parser("revoke", help="Revoke tokens by id (from 'list').")
        revoke.add_argument("ids", nargs="+", type=int)

    def handle(self, *args, subcommand: str, **options):  # noqa: ANN002, ANN003
        getattr(self, f"_{subcommand}")(**options)

    def _platform(self, key: str | None):  # noqa: ANN202
        if key is None:
            return None
        platform = platform_get(platform_key=key)
        if platform is None:
            raise CommandError(f"no platform {key!r}")
        return platform

    def _issue(self, *, username: str, platform: str | None, name: str, expires_in_days: int | None,
               **options) -> None:  # noqa: ANN003
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user {username!r}")
        scope = self._platform(platform)
        if scope is not None and not (user.is_superuser or user.memberships.filter(platform=scope).exists()):
            raise CommandError(f"{username!r} is not a member of {platform!r}")
        if expires_in_days is not None and not 1 <= expires_in_days <= MAX_DAYS:
            raise CommandError(f"--expires-in-days must be 1 to {MAX_DAYS}")
        if len(name) > 100:
            raise CommandError("--name must be at most 100 characters")
        now = timezone.now()
        issued = api_token_issue(user=user, platform=scope, name=name, now=now,
                                 expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None)
        self.stdout.write(json.dumps({**_row(issued.token), "key": issued.key}))

    def _list(self, *, user: str | None, platform: str | None, active: bool, **options) -> None:  # noqa: ANN003
        tokens = ApiToken.objects.select_related("user", "platform").order_by("-created_at", "-id")
        if user is not None:
            tokens = tokens.filter(user__username=user)
        if platform is not None:
            tokens = tokens.filter(platform=self._platform(platform))
        if active:
            now = timezone.now()
            tokens = tokens.filter(revoked_at__isnull=True).exclude(expires_at__lte=now)
        for token in tokens.iterator(chunk_size=1000):
            self.stdout.write(json.dumps(_row(token)))

    def _revoke(self, *, ids: list[int], **options) -> None:  # noqa: ANN003
        tokens = {token.pk: token for token in ApiToken.objects.filter(pk__in=ids)}
        missing = [i for i in ids if i not in tokens]
        if missing:
            raise CommandError(f"no token {', '.join(map(str, missing))}: nothing revoked")
        for i in ids:
            revoked = api_token_revoke(token=tokens[i])
            self.stdout.write(json.dumps({"id": i, "revoked": revoked}))


def _row(token: ApiToken) -> dict:
    def instant(value):  # noqa: ANN001, ANN202
        return value.isoformat() if value else None

    return {"id": token.pk, "prefix": token.prefix, "name": token.name, "username": token.user.get_username(),
            "platform_key": token.platform.platform_key if token.platform_id else None,
            "created_at": instant(token.created_at), "expires_at": instant(token.expires_at),
            "revoked_at": instant(token.revoked_at)}
