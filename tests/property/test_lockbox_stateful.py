"""Run the library's stateful machine: sessions, walk-aways, hostile frames, reboots, power cuts."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

from fwdist.testing import LockboxMachine

LockboxMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=40,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestLockboxMachine = LockboxMachine.TestCase
