"""Web replicas are stateless: two gunicorn servers (2 workers each) on one database share the traffic, debit the
same accounts at the same moment, and the ledger stays exact; every call, sent again to the other server, gives its
first result (tests/faults/harness.py does the sending and the checks)."""

from __future__ import annotations

import random
import threading
from collections import defaultdict
from pathlib import Path

from tests.faults.harness import Cluster, Deployment, Storm, check_database, resend_all, summarize, wait_until


def lock_waiters(cluster: Cluster, dbname: str) -> set[str]:
    """The application names (one per server) of the backends waiting for a lock."""
    with cluster.connect(dbname) as conn:
        rows = conn.execute("SELECT application_name FROM pg_stat_activity WHERE datname = current_database() "
                            "AND wait_event_type = 'Lock'").fetchall()
    return {name for (name,) in rows}


def test_two_servers_on_one_database_keep_the_ledger_exact(fault_cluster: tuple[Cluster, str], tmp_path: Path):
    cluster, template = fault_cluster
    with Deployment(tmp_path, cluster=cluster, template=template, dbname="billing_two_servers", members=3) as dep:
        dep.setup(servers=2)
        storm = Storm(dep, seed=3)

        # The race: one account's row locked here, eight debits of it sent through both servers in turns. They
        # must all wait for the lock, backends of both servers (their connections carry the server's
        # application_name), before it is let go.
        account = dep.members[0].account_id
        with cluster.connect(dep.dbname) as conn, conn.transaction():
            conn.execute("SELECT 1 FROM credits_creditaccount WHERE id = %s FOR UPDATE", [account])
            racers = [threading.Thread(target=storm.one, args=(random.Random(i), f"race-{i}", account, "usage"))
                      for i in range(8)]
            for racer in racers:
                racer.start()
            wait_until(lambda: lock_waiters(cluster, dep.dbname) >= {"billing-0", "billing-1"}, 30,
                       "debits of both servers waiting for the account's lock")
        for racer in racers:
            racer.join()
        assert [c.outcome for c in storm.calls] == ["acknowledged"] * 8, [(c.status, c.answer) for c in storm.calls]

        # Then traffic of every kind, in turns between the servers: usage events, batches, holds reserved through
        # one server and captured or released through the other.
        storm.run(threads=6, operations=20)
        summary = summarize(storm.calls)
        assert summary["acknowledged"] == summary["sent"], summary
        servers_of = defaultdict(set)
        for call in storm.calls:
            for event in call.events():
                servers_of[event["account_id"]].add(call.server)
        assert all(servers_of[m.account_id] == {0, 1} for m in dep.members), servers_of
        assert {c.kind for c in storm.calls} == {"usage", "batch", "reserve", "capture", "release"}

        verification = resend_all(dep, storm.calls, to_other_server=True)
        assert verification.replays_checked == len(storm.calls), verification.problems[:10]
        check_database(dep, storm.calls, verification)
        assert verification.problems == []
        assert verification.ledger_ok, verification.ledger_output
