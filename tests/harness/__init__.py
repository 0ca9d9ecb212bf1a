"""The long-running test harnesses, as importable modules: crash loop (`crash_loop`), power-loss emulation
(`powerloss`), corruption sweep (`corruption_sweep`), fuzzed calls (`fuzz_calls`) and group commit
(`group_commit`).

Tests import them as ``from tests.harness import crash_loop`` (tests/conftest.py puts the checkout on
``sys.path``); the long runs start them through the thin entry points ``python scripts/NAME.py ...``, or as
``python -m tests.harness.NAME ...`` from the checkout. Harnesses that run a child process start it as
``python -m tests.harness.NAME`` with the checkout on ``PYTHONPATH``.
"""
