#!/usr/bin/env python3
"""Crash loop: the command line of `tests.harness.crash_loop` (see its docstring, or `--help`)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout

from tests.harness.crash_loop import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
