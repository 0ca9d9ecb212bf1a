"""`python -m byrondbm.bench`: the same as `byrondbm bench`."""

from __future__ import annotations

import argparse
import sys
from typing import Optional

from byrondbm.bench import add_arguments, run


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m byrondbm.bench", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
