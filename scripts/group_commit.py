#!/usr/bin/env python3
"""Group commit in ``'s'`` mode: the command line of `tests.harness.group_commit` (see its docstring, or `--help`)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout

from tests.harness.group_commit import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
