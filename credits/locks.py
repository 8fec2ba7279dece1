"""The only place rows of this app are locked, always accounts before holds, each in primary-key order."""

from __future__ import annotations

import uuid

from credits.models import CreditAccount, Hold


def account_lock(*, account_id: uuid.UUID | str) -> CreditAccount | None:
    return CreditAccount.objects.select_for_update().filter(pk=account_id).first()


def hold_lock(*, hold_id: uuid.UUID | str) -> Hold | None:
    return Hold.objects.select_for_update().filter(pk=hold_id).first()
