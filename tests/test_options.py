import pytest

import byrondbm
from byrondbm.options import Options


def test_defaults_are_valid():
    o = Options()
    assert o.memtable_size == 8 * 1024 * 1024 and o.bloom_bits_per_key == 10 and o.background_compaction


@pytest.mark.parametrize("name", ["memtable_size", "block_size", "bloom_bits_per_key", "block_cache_size",
                                  "target_file_size", "level_ratio", "l0_compaction_trigger"])
def test_out_of_range_names_the_option(name, path):
    with pytest.raises(ValueError, match=name):
        byrondbm.open(path, "c", **{name: -5})


def test_unknown_option_is_a_type_error(path):
    with pytest.raises(TypeError, match="memtable_sise"):
        byrondbm.open(path, "c", memtable_sise=10)


@pytest.mark.parametrize("kw", [dict(block_size="4096"), dict(block_size=4096.0), dict(background_compaction=1),
                                dict(memtable_size=True)])
def test_wrong_type_is_a_type_error(kw, path):
    with pytest.raises(TypeError, match=next(iter(kw))):
        byrondbm.open(path, "c", **kw)


def test_triggers_must_be_ordered():
    with pytest.raises(ValueError, match="l0_"):
        Options(l0_compaction_trigger=10, l0_slowdown_trigger=5)


def test_bad_option_creates_nothing(path):
    import os
    with pytest.raises(ValueError):
        byrondbm.open(path, "c", block_size=1)
    assert not os.path.exists(path)
