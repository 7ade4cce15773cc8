"""Whatever roots and timestamps a phone relays, in any order, a box's trust only moves
forward: its root version, signed time and timestamp version never go back, a refusal
changes nothing, and a reboot restores exactly what it held."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fwdist import trust
from fwdist.lockbox import Lockbox
from fwdist.testing import Releases, box_config
from tests.trust_helpers import ROOT_KEYS, T0, key, root_v1, timestamp

ROOTS = [root_v1()]
for _ in range(3):
    ROOTS.append(trust.next_root(ROOTS[-1]))
LINKS = [trust.sign(r, ROOT_KEYS[:2]) for r in ROOTS]  # root 1..4, all good
BAD = [trust.sign(ROOTS[1], [ROOT_KEYS[0], key("stranger")]),  # under-signed root 2
       trust.sign(trust.next_root(ROOTS[1], expires=T0), ROOT_KEYS[:2])]  # an expired root 3
STAMPS = [timestamp(v, T0 + t) for v in range(1, 5) for t in (0, 10, 20)]

ops = st.one_of(
    st.lists(st.sampled_from(LINKS + BAD), max_size=4).map(lambda ls: ("root", ls)),
    st.sampled_from(STAMPS).map(lambda w: ("stamp", w)),
    st.just(("reboot", None)),
)


@pytest.fixture(scope="module")
def rel(release_history: Callable[..., Releases]) -> Releases:
    return release_history(1, 8 * 1024, 7, deltas=False)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(ops, max_size=12))
def test_trust_only_moves_forward(rel: Releases, steps: list[tuple[str, object]]) -> None:
    config = box_config(rel)
    flash = config.make_flash()
    r = rel.releases[0]
    Lockbox.provision(flash, config, r.image, r.version, root=LINKS[0])
    box = Lockbox(flash, config, {})
    box.boot(0)
    for kind, arg in steps:
        before, state = box.trust_status(), box.state_bytes()
        if kind == "reboot":
            box = Lockbox(flash, config, {})
            box.boot(0)
            assert (box.trust_status(), box.state_bytes()) == (before, state)
            continue
        why = (box.offer_root(arg, 0) if kind == "root"  # type: ignore[arg-type]
               else box.offer_timestamp(arg, 0))  # type: ignore[arg-type]
        after = box.trust_status()
        if why is not None:
            assert (after, box.state_bytes()) == (before, state)
        for field in ("root_version", "time"):
            assert after[field] >= before[field]
        assert (after["timestamp_version"] or 0) >= (before["timestamp_version"] or 0)
