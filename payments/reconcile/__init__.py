"""Reconciliation with the payment providers (``manage.py reconcile stripe|creem``): what the provider says was
paid and refunded since a moment, compared with the orders, plan periods, recharges and ledger rows its webhooks
write here; fixes for what a ledger row posted through the services can fix (see ``stripe_checks``,
``creem_checks``, ``replay``)."""

from payments.reconcile.creem_checks import creem_reconcile
from payments.reconcile.report import Drift, DriftKind, Report
from payments.reconcile.stripe_checks import stripe_reconcile

RECONCILERS = {"stripe": stripe_reconcile, "creem": creem_reconcile}

__all__ = ["RECONCILERS", "Drift", "DriftKind", "Report", "creem_reconcile", "stripe_reconcile"]
