"""A database restart costs no request: gunicorn's workers keep their connections (CONN_MAX_AGE), and after the
postmaster is killed and started again each one is checked before its next use (CONN_HEALTH_CHECKS), so the first
request on a dead connection does not fail."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.faults.harness import Cluster, Deployment


def test_a_restarted_database_costs_no_request(fault_cluster: tuple[Cluster, str], tmp_path: Path):
    cluster, template = fault_cluster
    with Deployment(tmp_path, cluster=cluster, template=template, dbname="billing_reconnect", members=1) as dep:
        dep.setup(servers=1)
        path = f"/api/billing/admin/credits/transactions/?account_id={dep.members[0].account_id}"

        def answers(n: int) -> Counter:
            def get(_: int) -> int | str:
                try:
                    return dep.call(0, "GET", path)[0]
                except OSError as exc:
                    return type(exc).__name__
            with ThreadPoolExecutor(8) as pool:
                return Counter(pool.map(get, range(n)))

        assert answers(64) == {200: 64}
        with cluster.connect(dep.dbname) as conn:
            kept = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'billing-0'").fetchone()
        assert kept[0] >= 2  # the workers' threads keep connections: the restart will break them
        cluster.kill_postmaster()
        assert answers(64) == {200: 64}
