"""Benchmarks run by ``make bench`` (``python -m bench``).

Each module in :data:`bench.__main__.MODULES` exposes ``main(argv) -> int``, starts what it
needs itself, prints one ``name value`` line per figure on stdout (progress goes to stderr)
and stops everything it started.
"""
