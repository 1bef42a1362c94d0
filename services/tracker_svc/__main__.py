"""``python -m tracker_svc``: run the tracker service until SIGTERM."""

from __future__ import annotations

from goalflow_common.server import run_service
from tracker_svc.server import create_server
from tracker_svc.settings import TrackerSettings


def main() -> None:
    run_service("tracker", TrackerSettings(), create_server)


if __name__ == "__main__":
    main()
