"""`python -m byrondbm.server PATH ...`: the `serve` subcommand on its own (same options and exit status)."""

from __future__ import annotations

import argparse
import sys

from byrondbm.server import command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m byrondbm.server", description="Serve a byrondbm database over gRPC."
    )
    command.add_arguments(parser)
    return command.run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
