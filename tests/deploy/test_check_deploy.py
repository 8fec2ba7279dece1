"""`manage.py check --deploy` is clean with the production settings of the README's checklist, and is not with the
development defaults (so the clean run means something)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "billing.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://billing.example.com",
    "BEHIND_TLS_PROXY": "true",
    "TRUSTED_PROXY_COUNT": "1",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "SECURE_HSTS_PRELOAD": "true",
    "METRICS_TOKEN": secrets.token_urlsafe(32),
    "JWT_SIGNING_KEY": secrets.token_urlsafe(32),
}


def check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in PRODUCTION and not k.startswith("SECURE_")}
    return subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                          cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=120)


def test_check_deploy_is_clean_with_the_production_checklist():
    result = check_deploy(PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_flags_the_development_defaults():
    result = check_deploy({"DEBUG": "false"})
    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W009", "security.W012", "security.W016"):
        assert warning in result.stderr, result.stderr


def test_a_check_the_domain_cannot_meet_may_be_silenced():
    env = {**PRODUCTION, "SECURE_HSTS_PRELOAD": "false"}
    assert "security.W021" in check_deploy(env).stderr
    assert check_deploy({**env, "SILENCED_SYSTEM_CHECKS": "security.W021"}).returncode == 0
