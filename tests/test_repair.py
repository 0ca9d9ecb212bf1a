"""`byrondbm.check` and `byrondbm.repair`: check reports damage without raising; repair salvages every
readable record (log records around damage, every verifiable table block, tables without a readable
index), keeps deletions, rebuilds a missing or damaged CURRENT/MANIFEST, and leaves a consistent database."""

from __future__ import annotations

import os

import pytest

import byrondbm
from byrondbm.engine.repair import LOST_DIR

OPTS = dict(memtable_size=4096, block_size=512, target_file_size=8192, level1_size=16 * 1024,
            l0_compaction_trigger=2, large_value_threshold=600, background_compaction=False)


def _build(path: str) -> dict[bytes, bytes]:
    """A database with tables on several levels, large values, deletions and a log with data."""
    model: dict[bytes, bytes] = {}
    with byrondbm.open(path, "c", **OPTS) as db:
        for i in range(600):
            k = b"key%04d" % (i % 250)
            v = (b"%d:" % i) * (400 if i % 37 == 0 else 3)
            db[k] = v
            model[k] = v
            if i % 11 == 0:
                del db[b"key%04d" % (i // 3 % 250)]
                model.pop(b"key%04d" % (i // 3 % 250), None)
        assert sum(level["files"] for level in db.stats()["levels"]) >= 3
    return model


def _files(path: str, suffix: str) -> list[str]:
    return sorted(n for n in os.listdir(path) if n.endswith(suffix))


def _contents(path: str) -> dict[bytes, bytes]:
    with byrondbm.open(path, "r") as db:
        db._check()
        return dict(db.items())


def _data_blocks(path: str) -> list[tuple[int, int]]:
    """(offset, size) of each data block of a table, from its index."""
    from byrondbm.engine.sstable import format as fmt
    from byrondbm.engine.sstable.block import decode_index

    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        footer = fmt.decode_footer(fmt.read_exact(fd, fmt.FOOTER_SIZE, size - fmt.FOOTER_SIZE, path), size, path)
        h = footer.index
        _, offsets, sizes = decode_index(fmt.read_block(fd, h.offset, h.size, fmt.BLOCK_INDEX, path), h.size, path)
    finally:
        os.close(fd)
    return list(zip(offsets, sizes))


def _flip(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


@pytest.fixture
def db_path(tmp_path) -> str:
    return str(tmp_path / "db")


def test_check_healthy(db_path: str) -> None:
    _build(db_path)
    report = byrondbm.check(db_path)
    assert report["ok"] and report["problems"] == []
    assert report["tables"] >= 3 and report["entries"] > 0 and report["log_records"] > 0


def _listing(path: str) -> dict[str, tuple[int, int]]:
    """Every file under ``path``: (size, mtime in ns)."""
    found = {}
    for root, _, names in os.walk(path):
        for name in names:
            st = os.stat(os.path.join(root, name))
            found[os.path.relpath(os.path.join(root, name), path)] = (st.st_size, st.st_mtime_ns)
    return found


def test_repair_of_a_healthy_database_changes_nothing(db_path: str) -> None:
    model = _build(db_path)
    assert byrondbm.check(db_path)["ok"]
    before = _listing(db_path)
    for _ in range(2):
        report = byrondbm.repair(db_path)
        assert report["ok"] and not report["changed"] and report["kept_records"] == len(model)
        assert report["lost"]["records"] == 0 and report["lost"]["ranges"] == [] and report["moved_to_lost"] == []
        assert _listing(db_path) == before  # names, sizes and mtimes: not one file written, moved or touched
    assert _contents(db_path) == model


def _compacted(path: str, n: int) -> dict[bytes, bytes]:
    """One version of each of ``n`` keys, in the bottom level (one entry a record, as after a bulk load)."""
    model = {b"key%08d" % i: b"v%d" % i * 5 for i in range(n)}
    with byrondbm.open(path, "c", block_size=1024) as db:
        db.update(model)
        db.compact()
    return model


def test_repair_reports_exactly_the_records_and_key_range_a_flipped_byte_cost(db_path: str) -> None:
    model = _compacted(db_path, 6000)
    table = os.path.join(db_path, _files(db_path, ".sst")[0])
    blocks = _data_blocks(table)
    b = len(blocks) // 2
    offset, size = blocks[b]
    _flip(table, offset + size // 2)

    check = byrondbm.check(db_path)
    (damaged,) = check["damaged_ranges"]
    assert not check["ok"] and check["damaged_entries_exact"]
    assert check["entries"] + check["damaged_entries"] == len(model)  # readable counted, not only blocks before

    report = byrondbm.repair(db_path)
    assert report["ok"] and report["changed"]
    repaired = _contents(db_path)
    gone = sorted(set(model) - set(repaired))
    lost = report["lost"]
    assert lost["records"] == len(gone) == check["damaged_entries"] > 0 and lost["records_exact"]
    (rng,) = lost["ranges"]
    assert rng == damaged and rng["exact"] and rng["entries"] == len(gone)
    assert rng["source"] == os.path.basename(table) and not rng["low_inclusive"]
    low, high = bytes.fromhex(rng["low"]), bytes.fromhex(rng["high"])
    assert all(low < k <= high for k in gone)  # the block's bounds, from the index
    assert high == gone[-1] and sorted(model).index(low) == sorted(model).index(gone[0]) - 1


def test_lost_records_of_a_table_whose_index_is_gone_are_an_estimate_or_exact_from_the_manifest(db_path: str) -> None:
    model = _compacted(db_path, 3000)
    table = os.path.join(db_path, _files(db_path, ".sst")[0])
    offset, size = _data_blocks(table)[3]
    _flip(table, offset + size // 2)  # the walk stops here
    _flip(table, os.path.getsize(table) - 10)  # and the footer is gone
    report = byrondbm.repair(db_path)
    gone = len(model) - len(_contents(db_path))
    (rng,) = report["lost"]["ranges"]
    assert report["lost"]["records"] == gone > 0 and rng["exact"]  # the manifest recorded the table's entries
    assert rng["high"] == max(model).hex() and not rng["low_inclusive"]


def test_lost_log_records_are_an_estimate_marked_as_one(db_path: str) -> None:
    with byrondbm.open(db_path, "c") as db:
        for i in range(30):
            db[b"k%02d" % i] = b"v%02d" % i
    log = os.path.join(db_path, _files(db_path, ".log")[0])
    _flip(log, os.path.getsize(log) // 30 * 10 + 12)
    lost = byrondbm.repair(db_path)["lost"]
    assert lost["records"] >= 1 and not lost["records_exact"]
    assert lost["ranges"][0]["low"] is None and lost["ranges"][0]["high"] is None  # keys unknown


def test_damaged_table_block(db_path: str) -> None:
    model = _build(db_path)
    table = os.path.join(db_path, _files(db_path, ".sst")[0])
    offset, size = _data_blocks(table)[1]
    _flip(table, offset + size // 2)  # inside the second data block
    with pytest.raises(byrondbm.CorruptionError) as info:
        _contents(db_path)
    assert table in str(info.value)
    report = byrondbm.check(db_path)
    assert not report["ok"] and any(table in p for p in report["problems"])
    report = byrondbm.repair(db_path)
    assert report["ok"] and report["lost"]["table_blocks"] == 1
    assert report["lost"]["records"] > 0 and len(report["lost"]["ranges"]) == 1
    repaired = _contents(db_path)
    assert 0 < len(repaired) < len(model) + 50
    assert sum(repaired.get(k) == v for k, v in model.items()) >= len(model) - 40  # only that block's keys
    assert os.path.exists(os.path.join(db_path, LOST_DIR, os.path.basename(table)))


def test_damaged_large_value_is_reported_by_key(db_path: str) -> None:
    model = _build(db_path)
    # Large values are written before the data block that refers to them: a gap before a data block (or
    # before the first one) is a large value's run. Damage the first such run.
    run_starts = []
    for name in _files(db_path, ".sst"):
        table = os.path.join(db_path, name)
        end = 0
        for offset, size in _data_blocks(table):
            if offset > end:
                run_starts.append((table, end))
            end = offset + size + 5
    table, start = run_starts[0]
    _flip(table, start + 10)
    report = byrondbm.repair(db_path)
    assert report["ok"] and report["lost"]["large_values"] == 1
    (lost_key,) = [bytes.fromhex(k) for k in report["lost"]["keys"]]
    repaired = _contents(db_path)  # the lost version may have been an old one: only that key may differ
    assert {k: v for k, v in repaired.items() if k != lost_key} == {k: v for k, v in model.items() if k != lost_key}


def test_table_with_damaged_footer_is_walked(db_path: str) -> None:
    model = _build(db_path)
    tables = _files(db_path, ".sst")
    for name in tables:
        path = os.path.join(db_path, name)
        _flip(path, os.path.getsize(path) - 10)  # every footer
    check = byrondbm.check(db_path)  # the database no longer opens, yet check counts what the walks read
    assert not check["ok"] and check["entries"] >= len(model) and check["damaged_entries"] == 0
    report = byrondbm.repair(db_path)
    assert report["ok"]
    assert report["lost"]["tables_unreadable"] == len(tables)  # each noted, yet its blocks were walked
    assert report["lost"]["records"] == 0  # each walk reached the end of the table's data
    assert _contents(db_path) == model


@pytest.mark.parametrize("damage", ["delete_current", "garbage_current", "delete_manifest", "flip_manifest"])
def test_missing_or_damaged_manifest_is_rebuilt(db_path: str, damage: str) -> None:
    model = _build(db_path)
    manifest = os.path.join(db_path, next(n for n in os.listdir(db_path) if n.startswith("MANIFEST")))
    if damage == "delete_current":
        os.unlink(os.path.join(db_path, "CURRENT"))
    elif damage == "garbage_current":
        with open(os.path.join(db_path, "CURRENT"), "wb") as f:
            f.write(b"\x00\x01garbage")
    elif damage == "delete_manifest":
        os.unlink(manifest)
    else:
        _flip(manifest, 20)
    for flag in "rwc":
        with pytest.raises(byrondbm.CorruptionError):
            byrondbm.open(db_path, flag)
    assert not byrondbm.check(db_path)["ok"]
    report = byrondbm.repair(db_path)
    assert report["ok"]
    assert any("manifest unreadable" in p for p in report["problems"])
    assert _contents(db_path) == model


def test_damaged_log_record_keeps_the_records_around_it(db_path: str) -> None:
    with byrondbm.open(db_path, "c") as db:
        for i in range(30):
            db[b"k%02d" % i] = b"v%02d" % i
    log = os.path.join(db_path, _files(db_path, ".log")[0])
    record = os.path.getsize(log) // 30
    _flip(log, record * 10 + 12)  # inside record 10
    with pytest.raises(byrondbm.CorruptionError):
        byrondbm.open(db_path, "r")
    report = byrondbm.repair(db_path)
    assert report["ok"] and report["lost"]["log_bytes"] > 0
    assert _contents(db_path) == {b"k%02d" % i: b"v%02d" % i for i in range(30) if i != 10}


def test_torn_log_tail_is_normal(db_path: str) -> None:
    with byrondbm.open(db_path, "c") as db:
        db[b"a"] = b"1"
        db[b"b"] = b"2"
    log = os.path.join(db_path, _files(db_path, ".log")[0])
    with open(log, "r+b") as f:
        f.truncate(os.path.getsize(log) - 2)
    report = byrondbm.check(db_path)
    assert report["ok"] and report["torn_log_bytes"] > 0
    assert _contents(db_path) == {b"a": b"1"}


def test_deletions_survive_repair(db_path: str) -> None:
    with byrondbm.open(db_path, "c", **OPTS) as db:
        for i in range(300):
            db[b"k%03d" % i] = b"x" * 50
        db.compact()  # the values sit in the bottom level
        for i in range(0, 300, 2):
            del db[b"k%03d" % i]  # tombstones in the log and newer tables
    byrondbm.repair(db_path)
    assert sorted(_contents(db_path)) == [b"k%03d" % i for i in range(1, 300, 2)]


def test_repair_refuses_an_open_or_missing_database(db_path: str, tmp_path) -> None:
    with byrondbm.open(db_path, "c") as db:
        db[b"a"] = b"1"
        with pytest.raises(byrondbm.error, match="locked"):
            byrondbm.repair(db_path)
        assert byrondbm.check(db_path)["ok"]  # check only reads: it works beside the writer
    with pytest.raises(byrondbm.error):
        byrondbm.repair(str(tmp_path / "missing"))
    other = tmp_path / "not-a-database"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(byrondbm.error, match="no byrondbm database"):
        byrondbm.repair(str(other))
    assert sorted(os.listdir(other)) == ["notes.txt"]
    with pytest.raises(byrondbm.error):
        byrondbm.check(str(tmp_path / "missing"))


def test_report_is_json(db_path: str) -> None:
    import json

    _build(db_path)
    _flip(os.path.join(db_path, _files(db_path, ".sst")[0]), 10)
    json.dumps(byrondbm.check(db_path))
    json.dumps(byrondbm.repair(db_path))
