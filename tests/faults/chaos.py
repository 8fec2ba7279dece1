"""The crash rehearsal (``make chaos``, or ``python -m tests.faults.chaos``; tests/faults/test_chaos.py runs the same).

Two gunicorn servers (2 workers each) on a PostgreSQL cluster of their own take a storm of usage events, batches and
holds from client threads, while gunicorn workers are killed (kill -9: their masters start new ones) several times
and the postmaster once (kill -9, then ``pg_ctl start``: crash recovery; the servers reconnect). Then every call is
sent again and the database read back (tests/faults/harness.py): every acknowledged call is there exactly once and
gives its first result again, every unknown one is applied whole or not at all, the balances are exact, and
``verify_ledger`` is clean. Prints a report; exits 1 when a check failed.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.faults.harness import (
    Cluster,
    Deployment,
    Storm,
    Verification,
    check_database,
    resend_all,
    summarize,
)

RECOVERY_GRACE = 1.0


@dataclass
class ChaosReport:
    storm: dict[str, Any] = field(default_factory=dict)
    worker_kills: list[tuple[float, str, int]] = field(default_factory=list)  # (second, server, pid)
    postmaster_kills: list[tuple[float, int, float]] = field(default_factory=list)  # (second, pid, seconds down)
    # calls sent once the database was back (RECOVERY_GRACE after pg_ctl's start returned) answered with a 5xx
    unanswered_after_recovery: int = 0
    unknown_causes: dict[str, int] = field(default_factory=dict)  # an unknown call's status, or its client error
    storm_seconds: float = 0.0
    total_seconds: float = 0.0
    verification: Verification = field(default_factory=Verification)

    @property
    def ok(self) -> bool:
        return self.verification.ok

    def lines(self) -> list[str]:
        s, v = self.storm, self.verification
        return [
            f"requests sent {s['sent']}: acknowledged {s['acknowledged']}, unknown {s['unknown']}, "
            f"refused {s['refused']}",
            "by kind: " + ", ".join(f"{kind} {counts}" for kind, counts in s["by_kind"].items()),
            f"kills: {len(self.worker_kills)} gunicorn worker(s) at "
            + ", ".join(f"{t:.1f}s ({server})" for t, server, _ in self.worker_kills)
            + f"; {len(self.postmaster_kills)} postmaster(s) at "
            + ", ".join(f"{t:.1f}s (down {down:.1f}s)" for t, _, down in self.postmaster_kills),
            "unknown calls by cause: " + ", ".join(f"{cause} {n}" for cause, n in self.unknown_causes.items()),
            f"5xx answers to calls sent {RECOVERY_GRACE:.0f}s or more after the database was back: "
            f"{self.unanswered_after_recovery}",
            f"re-sent {v.resent}: {v.replays_checked} acknowledged gave their first result; unknown ones: "
            f"{v.unknown_applied_before} had committed, {v.unknown_applied_now} applied by the re-send",
            f"verify_ledger: {v.ledger_output}",
            f"duration: storm {self.storm_seconds:.1f}s, whole rehearsal {self.total_seconds:.1f}s",
            "RESULT: " + ("ok" if self.ok else f"{len(v.problems)} problem(s)"),
            *[f"  problem: {problem}" for problem in v.problems[:30]],
        ]


def rehearse(workdir: Path, *, seconds: float = 30.0, worker_kills: int = 4, threads: int = 8, seed: int = 7,
             cluster: Cluster | None = None, template: str | None = None,
             log: Any = print) -> ChaosReport:
    """The rehearsal, in ``workdir`` (its own cluster unless ``cluster`` and a migrated ``template`` are given)."""
    report = ChaosReport()
    started = time.monotonic()
    rng = random.Random(seed)
    with Deployment(workdir, cluster=cluster, template=template, dbname="billing_chaos") as deployment:
        deployment.setup(servers=2)
        log(f"set up in {time.monotonic() - started:.1f}s: cluster {deployment.cluster.root}, servers on "
            + ", ".join(str(s.port) for s in deployment.servers))
        storm = Storm(deployment, seed=seed)
        stop = threading.Event()
        failure: list[BaseException] = []

        def run_storm() -> None:
            try:
                storm.run(threads=threads, stop=stop)
            except BaseException as exc:  # noqa: BLE001 - raised below
                failure.append(exc)

        # the kills, spread over the storm: workers on both servers in turns, the postmaster in the middle
        plan = [(seconds * (i + 1) / (worker_kills + 2), "worker", i % 2) for i in range(worker_kills)]
        plan.append((seconds * 0.5 + 0.5, "postmaster", None))
        plan.sort()
        clients = threading.Thread(target=run_storm, name="storm")
        storm_start = time.monotonic()
        clients.start()
        recovered: list[float] = []
        try:
            for at, what, server in plan:
                time.sleep(max(0.0, storm_start + at - time.monotonic()))
                if failure:
                    break
                now = time.monotonic() - storm_start
                if what == "worker":
                    target = deployment.servers[server]
                    pid = target.kill_worker(rng)
                    report.worker_kills.append((now, target.name, pid))
                    log(f"{now:5.1f}s kill -9 gunicorn {target.name} worker {pid}")
                else:
                    pid = deployment.cluster.postmaster_pid()
                    down = deployment.cluster.kill_postmaster()
                    recovered.append(time.monotonic())
                    report.postmaster_kills.append((now, pid, down))
                    log(f"{now:5.1f}s kill -9 postmaster {pid}; restarted after {down:.1f}s")
            time.sleep(max(0.0, storm_start + seconds - time.monotonic()))
        finally:
            stop.set()
            clients.join()
        report.storm_seconds = time.monotonic() - storm_start
        if failure:
            raise failure[0]
        for server in deployment.servers:
            server.wait_ready()  # the masters still run, with all their workers
        report.storm = summarize(storm.calls)
        report.unknown_causes = dict(Counter(
            str(call.status) if call.status else call.error.split(":")[0]
            for call in storm.calls if call.outcome == "unknown").most_common())
        if recovered:
            # a 5xx, not a lost connection (a worker killed since); the grace: connections begun while it started
            report.unanswered_after_recovery = sum(
                1 for call in storm.calls if call.sent_at > recovered[-1] + RECOVERY_GRACE
                and call.status is not None and call.status >= 500)
        log(f"storm over after {report.storm_seconds:.1f}s: {report.storm['sent']} calls; re-sending them all")
        report.verification = resend_all(deployment, storm.calls, to_other_server=True)
        check_database(deployment, storm.calls, report.verification)
    report.total_seconds = time.monotonic() - started
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the storm (default 30)")
    parser.add_argument("--worker-kills", type=int, default=4, help="gunicorn workers killed (default 4)")
    parser.add_argument("--threads", type=int, default=8, help="client threads (default 8)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, cluster) afterwards")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="billing-chaos-"))
    try:
        report = rehearse(workdir, seconds=args.seconds, worker_kills=args.worker_kills, threads=args.threads,
                          seed=args.seed)
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(["", "== chaos rehearsal ==", *report.lines()]))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
