"""Shared fixtures: a fresh database path, and options small enough that flushes and compactions happen
within a few thousand writes."""

from __future__ import annotations

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

SMALL = dict(memtable_size=4096, target_file_size=4096, level1_size=16384, block_size=512,
             l0_compaction_trigger=2, l0_slowdown_trigger=4, l0_stop_trigger=6)


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "db")


@pytest.fixture
def small():
    return dict(SMALL)
