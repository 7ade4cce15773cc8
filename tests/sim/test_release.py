"""The oracle's peer deltas and the release facts the strategies use."""

from __future__ import annotations

import shutil

import pytest

from fwdist.sample import SampleFirmware
from fwdist.staging import FULL_ENCODER
from sim import release as rel
from sim.release import ReleaseInfo, peer_delta


def test_peer_delta_takes_the_smallest_installed_tool() -> None:
    fw = SampleFirmware(size=32 * 1024, seed=2)
    old, new = fw.image(0), fw.image(1)
    d = peer_delta(old, new)
    tools = [t for t in ("zstd", "bsdiff", "xdelta3") if shutil.which(t)]
    if not tools:
        pytest.skip("no peer tool installed")
    assert d.tool.split()[0] in tools
    assert 0 < d.size < len(new) // 2


def test_peer_delta_falls_back_to_python_zstandard(monkeypatch: pytest.MonkeyPatch) -> None:
    fw = SampleFirmware(size=32 * 1024, seed=2)
    monkeypatch.setattr(rel.shutil, "which", lambda name: None)
    d = peer_delta(fw.image(0), fw.image(1))
    assert d.tool.startswith("python-zstandard level 19")
    assert 0 < d.size < 32 * 1024 // 2


def test_release_facts(small_release: ReleaseInfo) -> None:
    r = small_release
    assert r.image_bytes == 64 * 1024 and r.sample
    assert set(r.oracle) == set(r.sources) == {"1.1.0", "1.0.0"}
    for v in r.sources:
        assert 0 < r.oracle[v].size < r.image_bytes
        assert r.oracle[v].size < r.fwdist_delta_air[v] * 2
        if r.fwdist_delta_encoder[v] == FULL_ENCODER:  # no delta decodes in the box's RAM
            assert r.fwdist_delta_air[v] == r.fwdist_full_air
        else:
            assert r.fwdist_delta_air[v] < r.fwdist_full_air
    assert any("oracle" in line for line in r.describe())
