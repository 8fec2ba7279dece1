"""``python -m tests.faults.seed PLATFORM N`` (with ``DATABASE_URL``): the rehearsal's platform, its backend (an owner)
and N members, through the operators' own commands (``create_platform``, ``add_member``) run in one process. Prints
one JSON line: the backend's token (``add_member`` shows a key once) and each member's (username, account id)."""

from __future__ import annotations

import io
import json
import os
import sys


def main(platform_key: str, members: int) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_service.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from credits.models import CreditAccount

    def command(*args: str) -> dict:
        out = io.StringIO()
        call_command(*args, stdout=out)
        return json.loads(out.getvalue().strip().splitlines()[-1])

    command("create_platform", platform_key, "--name", "Fault rehearsal")
    backend = command("add_member", platform_key, "backend", "--role", "owner")
    names = [f"member{i}" for i in range(members)]
    for name in names:
        command("add_member", platform_key, name, "--role", "member")
    accounts = dict(CreditAccount.objects.filter(platform__platform_key=platform_key, user__username__in=names)
                    .values_list("user__username", "id"))
    print(json.dumps({"token": backend["token"], "members": [(name, str(accounts[name])) for name in names]}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
