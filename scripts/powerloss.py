#!/usr/bin/env python3
"""Power-loss emulation for ``'s'`` mode: the command line of `tests.harness.powerloss` (see its docstring, or `--help`)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout

from tests.harness.powerloss import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
