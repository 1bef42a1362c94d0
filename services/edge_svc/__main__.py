"""``python -m edge_svc`` / ``goalflow-edge``: run the edge until SIGTERM."""

from __future__ import annotations

from edge_svc.server import run
from edge_svc.settings import EdgeSettings


def main() -> None:
    run(EdgeSettings())  # settings are built once, here


if __name__ == "__main__":
    main()
