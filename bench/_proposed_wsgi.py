"""The WSGI application of ``make run`` plus what the bench-only proposal needs, for bench servers only:
``bench/usage_batch.py --proposed`` (``BENCH_BATCH_PATCHES=1``: ``bench/_batch_proposed.py`` applied in this
server's processes). Everything else is exactly ``billing_service.wsgi``."""

# Django must be set up (by importing the application) before the bench module loads.
import os

from billing_service.wsgi import application  # noqa: F401

if os.environ.get("BENCH_BATCH_PATCHES") == "1":
    import _batch_proposed

    _batch_proposed.apply()
