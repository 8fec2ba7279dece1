"""Where a provider's page may send the customer back to: the platform's allowed origins (and the deployment's
``CHECKOUT_ALLOWED_ORIGINS``). Checked before anything is written, for checkouts, portals and card setups."""

from __future__ import annotations

from accounts.models import Platform
from payments import selectors
from payments.errors import InvalidCheckout


def redirects_check(platform: Platform, **urls: str) -> None:
    """Raises ``InvalidCheckout`` naming the first of ``urls`` (field name -> URL) off the allowed origins."""
    origins = selectors.allowed_redirect_origins(platform=platform)
    for field, url in urls.items():
        if selectors.origin_of(url) not in origins:
            raise InvalidCheckout(field, "Must be an http(s) URL on one of the platform's allowed origins.")
