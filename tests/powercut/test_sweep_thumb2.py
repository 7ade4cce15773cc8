"""Power-cut sweep over an update whose delta is Thumb-2-filtered (issue 10 item 3).

The filtered decoder reads old through the address prediction and writes new
through the BL codec; a cut anywhere must leave a box that finishes the update
with the right image, exactly as the unfiltered sweep in test_sweep does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fwdist.testing import Releases, make_releases
from tests.powercut.test_sweep import sweep


@pytest.fixture(scope="module")
def rel_thumb2(tmp_path_factory: pytest.TempPathFactory) -> Releases:
    root: Path = tmp_path_factory.mktemp("thumb2")
    return make_releases(root, count=2, size=24 * 1024, seed=3, encoders=("bsdiff-lzma+thumb2",))


def test_the_release_carries_a_filtered_delta(rel_thumb2: Releases) -> None:
    assert [d.encoder for d in rel_thumb2.releases[-1].manifest.deltas] == ["bsdiff-lzma+thumb2"]


@pytest.mark.parametrize("torn", [False, True], ids=["clean", "torn"])
def test_cut_at_every_operation_thumb2_delta(rel_thumb2: Releases, torn: bool) -> None:
    total, cuts = sweep(rel_thumb2, torn)
    print(f"\npower-cut sweep (thumb2 delta, {'torn' if torn else 'clean'}): {cuts} cut points")
    assert (total, cuts) == (37, 37)
