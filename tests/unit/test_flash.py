"""The NOR flash model enforces NOR rules, counts operations and cuts power where told."""

from __future__ import annotations

from pathlib import Path

import pytest

from fwdist.flash import AlignedWriter, FileFlash, Flash, FlashError, PowerCut, Region
from fwdist.journal import Journal, JournalError


def test_erased_flash_reads_ff_and_write_then_read() -> None:
    f = Flash(16384, 4096, 8)
    assert f.read(0, 16) == b"\xff" * 16
    f.write(8, b"abcdefgh")
    assert f.read(0, 24) == b"\xff" * 8 + b"abcdefgh" + b"\xff" * 8
    assert (f.ops, f.writes, f.erases, f.bytes_written) == (1, 1, 0, 8)


def test_nor_rules() -> None:
    f = Flash(16384, 4096, 8)
    f.write(0, b"A" * 8)
    with pytest.raises(FlashError, match="not erased"):
        f.write(0, b"B" * 8)
    with pytest.raises(FlashError, match="not erased"):
        f.write(0, b"\xff" * 8)  # writing 0xFF over written bytes is refused too
    with pytest.raises(FlashError, match="aligned"):
        f.write(4, b"B" * 8)
    with pytest.raises(FlashError, match="aligned"):
        f.write(8, b"B" * 5)
    with pytest.raises(FlashError, match="whole sectors"):
        f.erase(0, 2048)
    with pytest.raises(FlashError, match="whole sectors"):
        f.erase(2048, 4096)
    with pytest.raises(FlashError, match="outside"):
        f.write(16384, b"B" * 8)
    assert f.ops == 1  # refused operations are not operations
    f.erase(0, 8192)
    assert f.erase_counts == [1, 1, 0, 0] and f.ops == 3
    f.write(0, b"B" * 8)
    assert f.read(0, 8) == b"B" * 8


def test_geometry_is_checked() -> None:
    with pytest.raises(FlashError):
        Flash(10000, 4096, 8)
    with pytest.raises(FlashError):
        Flash(8192, 4096, 3)


def test_power_cut_before_operation_n() -> None:
    f = Flash(8192, 4096, 8)
    f.arm(2)
    f.write(0, b"0" * 8)
    f.write(8, b"1" * 8)
    with pytest.raises(PowerCut) as cut:
        f.write(16, b"2" * 8)
    assert cut.value.op == 2 and not cut.value.torn
    assert f.read(16, 8) == b"\xff" * 8  # nothing of the cut write landed
    with pytest.raises(PowerCut):  # dead until power comes back
        f.write(24, b"3" * 8)
    f.power_on()
    f.write(16, b"2" * 8)
    assert f.read(0, 24) == b"0" * 8 + b"1" * 8 + b"2" * 8


def test_power_cut_is_not_an_exception() -> None:
    """No ``except Exception`` in the code under test can swallow a power cut."""
    assert not issubclass(PowerCut, Exception)


def test_torn_write_lands_a_prefix() -> None:
    seen = set()
    for seed in range(40):
        f = Flash(8192, 4096, 8)
        f.arm(0, torn=True, seed=seed)
        with pytest.raises(PowerCut) as cut:
            f.write(0, bytes(range(1, 65)))
        assert cut.value.torn
        got = f.read(0, 64)
        n = len(got.rstrip(b"\xff"))
        assert got[:n] == bytes(range(1, n + 1)) and 0 <= n < 64
        assert not f.is_erased(0, max(n, 1)) or n == 0
        seen.add(n)
    assert len(seen) > 10  # the prefix length varies with the seed


def test_torn_erase_erases_a_prefix() -> None:
    f = Flash(8192, 4096, 8)
    f.write(0, b"x" * 4096)
    f.arm(1, torn=True, seed=3)
    with pytest.raises(PowerCut):
        f.erase(0, 4096)
    data = f.read(0, 4096)
    n = len(data) - len(data.lstrip(b"\xff"))
    assert 0 <= n < 4096 and data[n:] == b"x" * (4096 - n)


def test_file_flash_persists(tmp_path: Path) -> None:
    path = tmp_path / "flash.bin"
    f = FileFlash(path, 8192, 4096, 8)
    f.write(16, b"persist!")
    f.close()
    g = FileFlash(path, 8192, 4096, 8)
    assert g.read(16, 8) == b"persist!"
    with pytest.raises(FlashError, match="not erased"):
        g.write(16, b"again!!!")
    g.erase(0, 4096)
    g.close()
    assert FileFlash(path, 8192, 4096, 8).read(16, 8) == b"\xff" * 8
    with pytest.raises(FlashError, match="holds 8192 bytes, not a 16384-byte flash"):
        FileFlash(path, 16384, 4096, 8)


def test_region_bounds_and_aligned_writer() -> None:
    f = Flash(16384, 4096, 8)
    r = Region(f, "slot", 4096, 8192)
    with pytest.raises(FlashError, match="outside region slot"):
        r.read(8000, 200)
    r.erase(0, 8192)
    w = AlignedWriter(r, block=64)
    for i in range(50):
        w.write(bytes([i]) * 7)
    assert w.close() == 350
    assert r.read(0, 350) == b"".join(bytes([i]) * 7 for i in range(50))
    assert r.read(350, 2) == b"\xff\xff"  # padded with erased bytes to the alignment
    assert f.read(0, 8) == b"\xff" * 8  # nothing outside the region


def test_journal_replays_and_compacts() -> None:
    f = Flash(8192, 4096, 8)
    j = Journal((Region(f, "j0", 0, 4096), Region(f, "j1", 4096, 4096)))
    with pytest.raises(JournalError):
        j.load()
    j.format(b"snap0")
    for i in range(300):
        if not j.fits(b"rec%03d" % i):
            j.compact(b"snap%03d" % i)
        j.append(b"rec%03d" % i)
    k = Journal(j.halves)
    replay = k.load()
    assert replay.snapshot == b"snap169" and not replay.dirty
    assert replay.records == [b"rec%03d" % i for i in range(169, 300)]
    assert j.compactions == 2  # format and one switch: a half holds 169 records of 24 bytes


def test_journal_torn_record_is_dropped_and_tail_is_dirty() -> None:
    f = Flash(8192, 4096, 8)
    j = Journal((Region(f, "j0", 0, 4096), Region(f, "j1", 4096, 4096)))
    j.format(b"snap")
    j.append(b"one")
    f.arm(f.ops, torn=True, seed=5)
    with pytest.raises(PowerCut):
        j.append(b"two-two-two-two")
    f.power_on()
    k = Journal(j.halves)
    replay = k.load()
    assert replay.records == [b"one"]
    assert replay.dirty == (f.read(k.halves[k.current].start + k.pos, 1) != b"\xff")


def test_clone_is_an_independent_disarmed_copy_and_can_reuse_a_spare() -> None:
    f = Flash(16384, 4096, 8)
    f.write(8, b"abcdefgh")
    f.erase(4096, 4096)
    twin = f.clone()
    assert twin.read(0, 16384) == f.read(0, 16384)
    assert (twin.ops, twin.writes, twin.erases, twin.bytes_written, twin.erase_counts) == (
        2, 1, 1, 8, [0, 1, 0, 0])
    with pytest.raises(FlashError, match="not erased"):
        twin.write(8, b"\xff" * 8)  # the written map is copied, not just the bytes
    twin.write(16, b"12345678")
    assert f.read(16, 8) == b"\xff" * 8  # independent
    f.arm(f.ops)
    cold = f.clone()
    cold.write(24, b"z" * 8)  # the countdown is not copied
    spare = Flash(16384, 4096, 8)
    spare.write(0, b"y" * 16)
    spare.arm(spare.ops)
    again = f.clone(into=spare)
    assert again is spare and again.read(0, 16384) == f.read(0, 16384)
    assert (again.ops, again.erase_counts) == (2, [0, 1, 0, 0])
    again.write(24, b"z" * 8)
    with pytest.raises(FlashError, match="same geometry"):
        f.clone(into=Flash(8192, 4096, 8))
    with pytest.raises(FlashError, match="same geometry"):
        f.clone(into=f)
