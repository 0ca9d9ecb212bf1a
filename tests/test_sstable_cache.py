"""Block cache: eviction (second chance, near LRU) by total charge, counters, table eviction, concurrent use, charges."""

from __future__ import annotations

import threading

from byrondbm.engine.sstable.cache import (
    BLOCK_BITS,
    DECODED_ENTRY,
    ENTRY_OVERHEAD,
    BlockCache,
    decoded_charge,
    raw_charge,
)


def k(table: int, block: int) -> int:
    return table << BLOCK_BITS | block


def test_hits_misses_and_lru_eviction_by_charge() -> None:
    cache = BlockCache(100)
    cache.put(k(1, 0), "a", 40)
    cache.put(k(1, 40), "b", 40)
    assert cache.get(k(1, 0)) == "a"  # now k(1, 40) is least recently used
    cache.put(k(2, 0), "c", 40)  # 120 > 100: evict k(1, 40)
    assert cache.get(k(1, 40)) is None
    assert cache.get(k(1, 0)) == "a"
    assert cache.get(k(2, 0)) == "c"
    assert (cache.hits, cache.misses) == (3, 1)
    assert cache.charge == 80 and len(cache) == 2


def test_eviction_frees_enough_charge_for_a_big_block() -> None:
    cache = BlockCache(100)
    for i in range(10):
        cache.put(k(1, i), i, 10)
    cache.put(k(2, 0), "big", 95)
    assert cache.charge == 95 and len(cache) == 1
    assert cache.get(k(2, 0)) == "big"


def test_replacing_a_key_updates_the_charge() -> None:
    cache = BlockCache(100)
    cache.put(k(1, 0), "a", 30)
    cache.put(k(1, 0), "a2", 50)
    assert cache.charge == 50 and cache.get(k(1, 0)) == "a2"


def test_zero_capacity_and_oversized_blocks_are_not_cached() -> None:
    empty = BlockCache(0)
    empty.put(k(1, 0), "a", 1)
    assert empty.get(k(1, 0)) is None and empty.misses == 1
    small = BlockCache(10)
    small.put(k(1, 0), "kept", 10)
    small.put(k(1, 1), "too big", 11)
    assert small.get(k(1, 1)) is None and small.get(k(1, 0)) == "kept"


def test_a_full_cache_admits_a_block_read_twice_in_a_while() -> None:
    cache = BlockCache(100)
    for i in range(4):
        cache.admit(k(1, i), i, 25)  # room: cached at once
    assert len(cache) == 4 and cache.charge == 100
    cache.admit(k(2, 0), "once", 25)  # full: only remembered
    assert cache.get(k(2, 0)) is None and len(cache) == 4
    cache.admit(k(2, 0), "twice", 25)  # read again soon: cached, evicting one
    assert cache.get(k(2, 0)) == "twice" and len(cache) == 4 and cache.charge == 100
    for i in range(1, 21):  # two cachefuls of refusals and more push the oldest out of memory
        cache.admit(k(3, i), i, 25)
    cache.admit(k(3, 1), "again, but too late", 25)
    assert cache.get(k(3, 1)) is None
    cache.admit(k(3, 20), "again, in time", 25)
    assert cache.get(k(3, 20)) == "again, in time"
    cache._check()


def test_evict_table() -> None:
    cache = BlockCache(1000)
    for table in (1, 2, 3):
        for offset in range(0, 300, 100):
            cache.put(k(table, offset), (table, offset), 10)
    cache.evict_table(2)
    assert len(cache) == 6 and cache.charge == 60
    assert cache.get(k(2, 0)) is None and cache.get(k(1, 200)) == (1, 200)


def test_concurrent_use_keeps_the_charge_consistent() -> None:
    cache = BlockCache(500)

    def work(seed: int) -> None:
        for i in range(5000):
            key = k(seed % 3, (i * 7919 + seed) % 97)
            if cache.get(key) is None:
                cache.put(key, key, 1 + key % 13)
            if i % 997 == 0:
                cache.evict_table(seed % 3)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.charge <= 500
    assert cache.charge == sum(1 + key % 13 for key in cache._map)


def test_charges_estimate_real_memory() -> None:
    assert raw_charge(4096) == 4096 + ENTRY_OVERHEAD
    assert decoded_charge(4096, 33) == 4096 + ENTRY_OVERHEAD + 33 * DECODED_ENTRY
