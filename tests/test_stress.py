"""The stress suite's short profile, every experiment on every backend.

Each test runs one experiment of ``stress/`` (see ``docs/development.rst``)
against a portastreams server in its own process, with load generators in
other processes, and fails with the experiment's findings: bytes lost,
sessions that did not get what the protocol promises, descriptors or tasks
leaked, logging other than specified, a server that stopped serving.
``nox -s stress`` runs the same experiments with asyncio's own server as the
control beside them, and writes the figures as a report; ``-- --profile
long`` runs the long profile (10,000 connections, a 60-second soak).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from stress.experiments import EXPERIMENTS
from stress.experiments.common import Certificates
from stress.profiles import SHORT
from stress.results import SUBJECT, Target

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="the stress suite reads /proc and lowers RLIMIT_NOFILE (Linux)",
)


@pytest.fixture(scope="module")
def certificates() -> Iterator[Certificates]:
    with Certificates.create() as created:
        yield created


@pytest.mark.parametrize("experiment", list(EXPERIMENTS))
def test_short_profile(
    experiment: str, backend_name: str, certificates: Certificates
) -> None:
    row = EXPERIMENTS[experiment].run(
        Target(SUBJECT, backend_name), SHORT, certificates
    )
    print(row.describe())
    assert row.not_applicable is None
    assert not row.failures, row.describe()
