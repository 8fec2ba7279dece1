"""Fixtures of the fault rehearsals: one PostgreSQL cluster of their own for the session (never the shared embedded
server: these tests kill its postmaster) with a database migrated once, which each test copies."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.harness import Cluster, migrated_template
from tests.payments.local_servers import localstripe, stripe_settings  # the worker test's localstripe

__all__ = ["localstripe", "stripe_settings"]


@pytest.fixture(scope="session")
def fault_cluster() -> Iterator[tuple[Cluster, str]]:
    """(the cluster, the name of its migrated template database). Its folder is not under pytest's tmp_path: run as
    root, the cluster runs as the ``pgserver`` user, who may not enter pytest's private folder."""
    workdir = Path(tempfile.mkdtemp(prefix="billing-faults-"))
    cluster = Cluster(workdir)
    try:
        cluster.init()
        yield cluster, migrated_template(cluster)
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
