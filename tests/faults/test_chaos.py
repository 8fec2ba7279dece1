"""The crash rehearsal (``make chaos`` runs the same, tests/faults/chaos.py): during a storm of usage events, batches
and holds on two gunicorn servers, four workers are killed (kill -9) and the postmaster once; afterwards every
acknowledged call is in the database exactly once and gives its first result again, every unknown one is applied
whole or not at all, the balances are exact and ``verify_ledger`` is clean. About 1.5 minutes: marked slow
(``-m "not slow"`` leaves it out), and run by ``make test``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.chaos import rehearse
from tests.faults.harness import Cluster

pytestmark = pytest.mark.slow


@pytest.mark.timeout(900)
def test_killed_workers_and_postmaster_lose_and_double_nothing(fault_cluster: tuple[Cluster, str], tmp_path: Path):
    cluster, template = fault_cluster
    report = rehearse(tmp_path, seconds=25, worker_kills=4, threads=8, cluster=cluster, template=template,
                      log=lambda line: None)
    text = "\n".join(report.lines())
    assert report.ok, text
    assert len(report.worker_kills) == 4 and len(report.postmaster_kills) == 1, text
    # faults really cut calls (the proof is not of a quiet run), and the service answered again after each
    assert report.storm["unknown"] > 0 and report.storm["acknowledged"] > 0, text
    assert report.verification.unknown_applied_before + report.verification.unknown_applied_now == (
        report.storm["unknown"]), text
    assert report.storm["refused"] == 0, text
    assert report.unanswered_after_recovery == 0, text
