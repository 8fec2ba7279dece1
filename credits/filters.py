"""Query filters of the ledger listings. They validate input (a bad value is a 400 naming the field)
and document it in the schema; the selectors turn them into index-friendly queries."""

from __future__ import annotations

from datetime import UTC, datetime, time

import django_filters
from django import forms

from billing_service.filters import DateFilter, InstantFilter, TextFilter, UUIDFilter
from billing_service.pagination import InvalidCursor
from credits import selectors
from credits.models import CreditAccount, Hold, HoldStatus, LedgerEntry, TransactionType
from credits.selectors import LedgerDirection, LedgerFilter, day_end


class AccountLedger:
    """One account's ledger under a ``LedgerFilter``, as a listing pages it (``billing_service.pagination.
    PagedRows``): counts and pages from the constant-cost selectors (the account's counters, sequence ranges),
    cursors by sequence number. ``LedgerEntryFilterSet`` narrows it."""

    model = LedgerEntry  # what a FilterSet checks a queryset against

    def __init__(self, account: CreditAccount, flt: LedgerFilter | None = None) -> None:
        self.account, self.flt = account, flt or LedgerFilter()

    def all(self) -> AccountLedger:
        return self

    def slice(self, *, offset: int, limit: int) -> tuple[int, list[LedgerEntry]]:
        return selectors.ledger_slice(account=self.account, flt=self.flt, offset=offset, limit=limit)

    def keyset(
        self, *, direction: str | None, position: object, limit: int
    ) -> tuple[list[LedgerEntry], bool]:
        if direction is not None and (not isinstance(position, int) or isinstance(position, bool)):
            raise InvalidCursor()
        before, after = (position, None) if direction == "before" else (None, position)
        return selectors.ledger_keyset(
            account=self.account, flt=self.flt, before=before, after=after, limit=limit
        )

    def position_of(self, row: LedgerEntry) -> int:
        return row.sequence


class DateRangeForm(forms.Form):
    def clean(self):  # noqa: ANN201
        data = super().clean()
        start, end = data.get("from_date"), data.get("to_date")
        if start and end and start > end:
            raise forms.ValidationError({"to_date": "Must not be before from_date."})
        start, end = data.get("created_from"), data.get("created_to")
        if start and end and start > end:
            raise forms.ValidationError({"created_to": "Must not be before created_from."})
        return data


class LedgerEntryFilterSet(django_filters.FilterSet):
    transaction_type = django_filters.ChoiceFilter(
        choices=TransactionType.choices, help_text="Only rows of this type."
    )
    from_date = DateFilter(
        method="filter_from_date", help_text="First day included (YYYY-MM-DD, UTC)."
    )
    to_date = DateFilter(
        method="filter_to_date", help_text="Last day included (YYYY-MM-DD, UTC)."
    )
    created_from = InstantFilter(
        method="filter_created_from", help_text="Rows at or after this instant (ISO 8601 date-time, or a date: its "
        "UTC midnight)."
    )
    created_to = InstantFilter(
        method="filter_created_to", end_of_day=True,
        help_text="Rows at or before this instant (ISO 8601 date-time, or a date: the whole day, UTC)."
    )
    exclude_type = django_filters.ChoiceFilter(
        choices=TransactionType.choices, method="filter_exclude_type", help_text="Leave out rows of this type."
    )
    direction = django_filters.ChoiceFilter(
        choices=[(c, c) for c in LedgerDirection.CHOICES],
        method="filter_direction",
        help_text="`credit`: rows that raised the balance; `debit`: rows that lowered it; `either`: both (leaves "
        "out holds, which move credits between available and reserved).",
    )

    class Meta:
        model = LedgerEntry
        fields = ["transaction_type", "exclude_type", "from_date", "to_date", "created_from", "created_to",
                  "direction"]
        form = DateRangeForm

    def filter_from_date(self, queryset, name, value):  # noqa: ANN001, ANN201
        return queryset.filter(created_at__gte=datetime.combine(value, time.min, tzinfo=UTC))

    def filter_to_date(self, queryset, name, value):  # noqa: ANN001, ANN201
        end = day_end(value)
        return queryset if end is None else queryset.filter(created_at__lt=end)

    def filter_created_from(self, queryset, name, value):  # noqa: ANN001, ANN201
        return queryset.filter(created_at__gte=value)

    def filter_created_to(self, queryset, name, value):  # noqa: ANN001, ANN201
        return queryset.filter(created_at__lte=value)

    def filter_exclude_type(self, queryset, name, value):  # noqa: ANN001, ANN201
        return queryset.exclude(transaction_type=value)

    def filter_direction(self, queryset, name, value):  # noqa: ANN001, ANN201
        return queryset.filter(LedgerDirection.CONDITIONS[value])

    def filter_queryset(self, queryset):  # noqa: ANN001, ANN201
        if isinstance(queryset, AccountLedger):  # the selectors apply the filter
            return AccountLedger(queryset.account, self.ledger_filter())
        return super().filter_queryset(queryset)

    def ledger_filter(self) -> LedgerFilter:
        data = self.form.cleaned_data
        return LedgerFilter(
            transaction_type=data.get("transaction_type") or None,
            from_date=data.get("from_date"),
            to_date=data.get("to_date"),
            direction=data.get("direction") or None,
            exclude_type=data.get("exclude_type") or None,
            created_from=data.get("created_from"),
            created_to=data.get("created_to"),
        )


class PlatformLedgerFilterSet(LedgerEntryFilterSet):
    account_id = UUIDFilter(field_name="account_id", help_text="Only this credit account.")
    username = TextFilter(
        field_name="account__user__username", max_length=150, help_text="Only the account of this member."
    )

    class Meta(LedgerEntryFilterSet.Meta):
        fields = [*LedgerEntryFilterSet.Meta.fields, "account_id", "username"]


# --- holds (reservations) --------------------------------------------------------------------------------


class HoldFilterSet(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=HoldStatus.choices, help_text="Only holds in this state.")
    account_id = UUIDFilter(
        field_name="account_id", help_text="Only the holds of this credit account."
    )

    class Meta:
        model = Hold
        fields = ["status", "account_id"]
