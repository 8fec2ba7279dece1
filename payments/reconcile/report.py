"""What a reconciliation found: one ``Drift`` per disagreement between a provider and this service, and the
``Report`` that collects them with what was checked. Plain values: the command prints them (text or JSON)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class DriftKind(StrEnum):
    MISSING_CREDIT = "missing_credit"  # the provider was paid; no credit (or no paid order) here
    DOUBLE_CREDIT = "double_credit"  # one payment credited more than once here
    AMOUNT_MISMATCH = "amount_mismatch"  # the provider's amount is not ours (or our ledger's is not the order's)
    CURRENCY_MISMATCH = "currency_mismatch"
    REFUND_NOT_TAKEN_BACK = "refund_not_taken_back"  # refunded at the provider; not (all) taken back here
    UNKNOWN_TO_PROVIDER = "unknown_to_provider"  # paid here; the provider has no such payment (report only)


# A fix: posts through the services and returns (whether the drift is gone, a note). None: a person must look.
Fix = Callable[[], tuple[bool, str]]


@dataclass
class Drift:
    kind: DriftKind
    provider_ref: str  # the provider's object: cs_..., pi_..., in_..., ch_..., a Creem transaction id
    our_ref: str  # our row: "order <id>", "recharge <id>", "plan period <pk>", or "" (none here)
    detail: str
    fix: Fix | None = field(default=None, repr=False, compare=False)
    fixed: bool = False
    fix_note: str = ""

    @property
    def state(self) -> str:
        if self.fixed:
            return "fixed"
        if self.fix_note:
            return "fix failed"
        return "fixable (--fix)" if self.fix is not None else "needs a human"

    def as_dict(self) -> dict[str, Any]:
        return {"kind": str(self.kind), "provider_ref": self.provider_ref, "our_ref": self.our_ref,
                "detail": self.detail, "state": self.state, "fixable": self.fix is not None,
                "fixed": self.fixed, "fix_note": self.fix_note}


@dataclass
class Report:
    provider: str
    since: datetime
    platform_key: str | None
    checked: Counter = field(default_factory=Counter)  # what was compared, by source
    drifts: list[Drift] = field(default_factory=list)

    def add(self, kind: DriftKind, provider_ref: str, our_ref: str, detail: str, fix: Fix | None = None) -> None:
        self.drifts.append(Drift(kind=kind, provider_ref=provider_ref, our_ref=our_ref, detail=detail, fix=fix))

    @property
    def remaining(self) -> list[Drift]:
        return [drift for drift in self.drifts if not drift.fixed]

    def fix_all(self) -> None:
        """Runs each drift's fix once, in the order found; a failing fix is recorded on its drift."""
        for drift in self.drifts:
            if drift.fix is None or drift.fixed:
                continue
            try:
                drift.fixed, drift.fix_note = drift.fix()
            except Exception as exc:  # noqa: BLE001 - recorded on the drift, the run goes on with the others
                drift.fixed, drift.fix_note = False, f"{type(exc).__name__}: {exc}"
            if not drift.fixed and not drift.fix_note:
                drift.fix_note = "not applied"

    def as_dict(self) -> dict[str, Any]:
        return {"provider": self.provider, "since": self.since.isoformat(), "platform": self.platform_key,
                "checked": dict(self.checked), "drifts": [drift.as_dict() for drift in self.drifts],
                "remaining": len(self.remaining)}

    def lines(self) -> list[str]:
        out = [f"reconcile {self.provider} since {self.since.isoformat()}"
               f" (platform: {self.platform_key or 'all'})",
               "checked: " + (", ".join(f"{count} {source}" for source, count in self.checked.items()) or "nothing")]
        for drift in self.drifts:
            out.append(f"{drift.kind:<22} {drift.provider_ref or '-':<30} {drift.our_ref or '-':<45} "
                       f"[{drift.state}] {drift.detail}" + (f" ({drift.fix_note})" if drift.fix_note else ""))
        fixed = sum(drift.fixed for drift in self.drifts)
        out.append(f"{len(self.drifts)} drift(s): {fixed} fixed, {len(self.remaining)} remaining")
        return out
