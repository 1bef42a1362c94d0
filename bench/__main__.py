"""``python -m bench [--only NAME ...] [OPTIONS]``: run the benchmark modules in turn.

Options other than ``--only`` are passed to every selected module, so use them together
with ``--only`` (``python -m bench --only config --calls 500``).
"""

from __future__ import annotations

import argparse
import importlib
import sys

INTERRUPTED = 130  # what a module returns after Ctrl-C or SIGTERM

# Short name -> module. Later benchmarks join here, in the order they should run.
MODULES: dict[str, str] = {
    "config": "bench.config_bench",
    "ingest": "bench.ingest_bench",
    "export": "bench.export_bench",
    "simulate": "bench.simulate_bench",
    "soak": "bench.soak_bench",
    "browser": "bench.browser_bench",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--only", action="append", choices=sorted(MODULES), metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(MODULES)}",
    )
    args, rest = parser.parse_known_args(argv)
    status = 0
    for name in args.only or MODULES:
        print(f"== bench {name}", file=sys.stderr, flush=True)
        try:
            code = importlib.import_module(MODULES[name]).main(rest)
        except KeyboardInterrupt:
            code = INTERRUPTED
        if code:
            print(f"== bench {name} failed with exit code {code}", file=sys.stderr, flush=True)
            status = status or code
        if code == INTERRUPTED:
            break  # Ctrl-C stops the whole run, not just the current benchmark
    return status


if __name__ == "__main__":
    sys.exit(main())
