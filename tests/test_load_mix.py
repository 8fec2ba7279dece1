"""bench/load/locustfile.py (``make load``, README "Load test") imports and picks its tasks in the issue's mix:
usage events 70 %, holds 10 %, listings 10 %, account reads 5 %, webhooks 5 %. In a subprocess: importing locust
monkey-patches the process for gevent, which must never happen to the test run's threads."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json, sys
sys.path.insert(0, "bench/load")
import locustfile
from locust import HttpUser
users = [v for v in vars(locustfile).values() if isinstance(v, type) and issubclass(v, HttpUser) and v is not HttpUser]
[user] = users
print(json.dumps({"tasks": [t.__name__ for t in user.tasks], "mix": locustfile.MIX,
                  "signature": locustfile.stripe_signature(b'{"id":"evt_1"}', "whsec_x", 1700000000)}))
"""


@cache
def probe() -> dict:
    """The locustfile as a fresh interpreter sees it, without LOAD_USERS_FILE (it is read only when users start)."""
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_locustfile_imports_and_its_tasks_are_the_issues_mix():
    facts = probe()
    picked = Counter(facts["tasks"])
    total = sum(picked.values())
    shares = {name: round(100 * n / total) for name, n in picked.items()}
    assert shares == {"usage": 70, "hold": 10, "listing": 10, "account": 5, "webhook": 5}
    assert facts["mix"] == shares


def test_the_webhook_signature_is_stripes_scheme():
    import hashlib
    import hmac

    import stripe

    header = probe()["signature"]
    payload = '{"id":"evt_1"}'
    assert header == stripe.WebhookSignature.generate_signature_header(payload, "whsec_x", timestamp=1700000000)
    expected = hmac.new(b"whsec_x", b'1700000000.{"id":"evt_1"}', hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
