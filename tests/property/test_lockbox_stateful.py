"""Run the library's stateful machine: sessions, walk-aways, hostile frames, reboots, power cuts."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from fwdist.testing import LockboxMachine

LockboxMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=40,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestLockboxMachine = LockboxMachine.TestCase


@pytest.mark.slow
def test_longer_seeded_runs() -> None:
    """Ten times the examples and longer runs (about half a minute)."""
    run_state_machine_as_test(LockboxMachine, settings=settings(
        max_examples=1000,
        stateful_step_count=60,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    ))
