"""`python -m byrondbm.bench`: the same as `byrondbm bench`."""

from __future__ import annotations

import argparse
import sys

from byrondbm.bench import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m byrondbm.bench", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
