"""The WSGI application of ``make run`` plus what the bench-only proposals need, for bench servers only:
``bench/usage_http.py --proposed`` (two extra routes, ``bench/_usage_proposed.py``) and ``bench/usage_batch.py
--proposed`` (``BENCH_BATCH_PATCHES=1``: ``bench/_batch_proposed.py`` applied in this server's processes).
Everything else is exactly ``billing_service.wsgi``."""

# ruff: noqa: I001  (Django must be set up, by importing the application, before the bench modules load)
import os

from billing_service.wsgi import application  # noqa: F401

import _usage_proposed

_usage_proposed.add_route()

if os.environ.get("BENCH_BATCH_PATCHES") == "1":
    import _batch_proposed

    _batch_proposed.apply()
