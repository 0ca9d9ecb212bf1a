"""manifest.py: edits fold into the state; CURRENT/manifest damage is a clean CorruptionError; a failed
append is cut back (never a torn edit before a good one); a failed rotation leaves the old manifest current."""

from __future__ import annotations

import errno
import os
import struct

import pytest

import byrondbm
from byrondbm import CorruptionError
from byrondbm.engine import manifest
from byrondbm.engine.framing import frame
from byrondbm.engine.manifest import FileMeta, ManifestState, ManifestWriter


def _meta(n: int) -> FileMeta:
    return FileMeta(n, 1000 + n, b"a%d" % n, b"z%d" % n, n, n + 5, 10, 1)


def _writer(directory: str, number: int = 3) -> ManifestWriter:
    state = ManifestState(next_file=10, logs=[4], log_floor=4)
    return ManifestWriter(directory, number, state, 0o644)


def test_edits_fold_into_the_state(tmp_path) -> None:
    d = str(tmp_path)
    w = _writer(d)
    w.append({"add": [_meta(5).encode(0), _meta(6).encode(1)], "last_seq": 40, "count": 7})
    w.append({"del": [[0, 5]], "logs": [8], "log_floor": 8, "next_file": 12, "pointer": [1, b"m".hex()]})
    w.close()
    state, name = manifest.load(d)
    assert name == "MANIFEST-000003"
    assert state.levels == {0: {}, 1: {6: _meta(6)}}
    assert (state.last_seq, state.count, state.logs, state.log_floor, state.next_file) == (40, 7, [8], 8, 12)
    assert state.pointers == {1: b"m"}


def test_a_new_manifest_starts_with_everything_including_compaction_pointers(tmp_path) -> None:
    """A rotated manifest's first record (the snapshot) recreates the whole state, the round-robin
    compaction pointers of every level included."""
    d = str(tmp_path)
    w = _writer(d)
    w.append({"add": [_meta(5).encode(1)], "pointer": [1, b"k1"], "totals": {"flushes": 3}})
    w.append({"pointer": [2, b"\x00k2"], "count": 4})
    w.close()
    state, _ = manifest.load(d)
    ManifestWriter(d, 9, state, 0o644).close()  # what the engine does when a manifest grows large
    os.unlink(w.path)
    rotated, name = manifest.load(d)
    assert name == "MANIFEST-000009"
    assert rotated == state and rotated.pointers == {1: b"k1", 2: b"\x00k2"}


def test_keys_of_any_bytes_and_size_round_trip(tmp_path) -> None:
    d = str(tmp_path)
    big = bytes(range(256)) * 4096  # 1 MiB, every byte value
    meta = FileMeta(7, 99, b"", big, 1, 2, 3, 0)
    w = _writer(d)
    w.append({"add": [meta.encode(2)], "pointer": [2, b"\x00\xff"]})
    w.append({"pointer": [3, "00ff"]})  # hex is accepted too
    w.close()
    state, _ = manifest.load(d)
    assert state.levels[2][7] == meta
    assert state.pointers == {2: b"\x00\xff", 3: b"\x00\xff"}
    assert os.path.getsize(w.path) < len(big) + 1000  # stored raw, not hex


def test_torn_last_edit_is_dropped(tmp_path) -> None:
    d = str(tmp_path)
    w = _writer(d)
    w.append({"last_seq": 5})
    w.close()
    with open(w.path, "ab") as f:
        f.write(manifest.encode_edit({"last_seq": 9})[:-3])
    assert manifest.load(d)[0].last_seq == 5


@pytest.mark.parametrize(
    "current",
    [None, b"", b"MANIFEST-000003", b"garbage\n", b"MANIFEST-000099\n", b"000003.log\n", b"M" * 100000],
)
def test_bad_current_is_a_corruption_error(tmp_path, current) -> None:
    d = str(tmp_path)
    _writer(d).close()
    path = os.path.join(d, "CURRENT")
    if current is None:
        os.unlink(path)
    else:
        with open(path, "wb") as f:
            f.write(current)
    with pytest.raises(CorruptionError):
        manifest.load(d)


def _edit_payload(text: bytes, area: bytes = b"") -> bytes:
    return struct.pack("<I", len(text)) + text + area


@pytest.mark.parametrize(
    "payload",
    [_edit_payload(p) for p in (
        b"not json", b"[1, 2]", b'{"add": [[0, 1]]}', b'{"add": [[0, 1, 2, "zz", "", 1, 2, 3, 4]]}',
        b'{"logs": "abc"}', b'{"next_file": "x"}', b"\xff\xfe", b'{"del": [1]}',
        b'{"pointer": [1, {"b": [0, 5]}]}', b'{"pointer": [1, {"b": [-1, 1]}]}', b'{"pointer": [1, 7]}',
        b'{"add": [[0, 1, 2, {"b": [0, 2]}, {"b": [1, 9]}, 1, 2, 3, 4]]}',
    )] + [b"", b"\x01\x00", struct.pack("<I", 99) + b"{}"],
)
def test_malformed_edit_is_a_corruption_error(tmp_path, payload: bytes) -> None:
    d = str(tmp_path)
    w = _writer(d)
    w.close()
    with open(w.path, "ab") as f:
        f.write(frame(manifest.EDIT, payload))
    with pytest.raises(CorruptionError, match="MANIFEST-000003"):
        manifest.load(d)


def test_unknown_record_type_and_empty_manifest(tmp_path) -> None:
    d = str(tmp_path)
    w = _writer(d)
    w.close()
    with open(w.path, "ab") as f:
        f.write(frame(7, b"{}"))
    with pytest.raises(CorruptionError, match="type 7"):
        manifest.load(d)
    open(w.path, "wb").close()
    with pytest.raises(CorruptionError, match="no valid edit"):
        manifest.load(d)


def test_failed_append_is_cut_back(tmp_path, monkeypatch) -> None:
    d = str(tmp_path)
    w = _writer(d)
    w.append({"last_seq": 5})

    real_sync = manifest.sync_fd
    calls = []

    def enospc_once(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_sync(fd)

    monkeypatch.setattr(manifest, "sync_fd", enospc_once)
    with pytest.raises(OSError):
        w.append({"last_seq": 6, "add": [_meta(9).encode(0)]})
    monkeypatch.undo()
    assert os.path.getsize(w.path) == w.size
    w.append({"last_seq": 7})
    w.close()
    state, _ = manifest.load(d)
    assert state.last_seq == 7 and 9 not in state.levels.get(0, {})


def test_append_fails_for_good_if_the_cut_fails(tmp_path, monkeypatch) -> None:
    d = str(tmp_path)
    w = _writer(d)

    def eio(*args: object) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(manifest, "sync_fd", eio)
    monkeypatch.setattr(os, "ftruncate", eio)
    with pytest.raises(OSError):
        w.append({"last_seq": 6})
    monkeypatch.undo()
    with pytest.raises(byrondbm.error, match="reopen"):
        w.append({"last_seq": 7})
    w.close()


def test_failed_rotation_keeps_the_old_manifest_current(tmp_path, monkeypatch) -> None:
    d = str(tmp_path)
    old = _writer(d, 3)
    old.append({"last_seq": 5})
    real_replace = os.replace

    def failing_replace(src: str, dst: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError):
        ManifestWriter(d, 9, ManifestState(next_file=20, last_seq=5), 0o644)
    monkeypatch.setattr(os, "replace", real_replace)
    assert manifest.read_current(d) == "MANIFEST-000003"
    assert not os.path.exists(os.path.join(d, "MANIFEST-000009"))
    assert not os.path.exists(os.path.join(d, "CURRENT.tmp"))
    old.append({"last_seq": 8})
    old.close()
    assert manifest.load(d)[0].last_seq == 8
