"""The drop-in surfaces of the three other published billing APIs (``../shared/reference/``), one module each:

- ``billing_v1``: billing-service-api.txt, under ``BILLING_V1_PREFIX`` (default ``api/v1/``);
- ``account_api``: account-api.txt, under ``auth/account/``;
- ``entitlements_plans``: entitlements-plans-api.txt, under ``api/`` (``ai-entitlements``, ``ai-plans``,
  ``ai-subscriptions``).

Each maps requests onto the native views and shapes their responses (``billing_service.surfaces``): no rule of
its own. They compose every app's API, so they live here, in the highest layer."""
