"""Sorted string tables: immutable on-disk runs of entries with a bloom filter, a hash index, a block
index and a shared block cache. Byte layout: format.py (file), block.py, codec.py (compressed data blocks),
bloom.py, hash_index.py.
"""

from __future__ import annotations

from .bloom import key_hashes
from .cache import BlockCache
from .format import TableProperties
from .points import TablePoints
from .reader import TableReader
from .writer import TableWriter

__all__ = ["BlockCache", "TablePoints", "TableProperties", "TableReader", "TableWriter", "key_hashes"]
