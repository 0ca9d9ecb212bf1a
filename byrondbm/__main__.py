"""`python -m byrondbm`: the command line of `byrondbm.cli`."""

from __future__ import annotations

from byrondbm.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
