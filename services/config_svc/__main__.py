"""``python -m config_svc``: run the config service until SIGTERM."""

from __future__ import annotations

from config_svc.server import create_server
from config_svc.settings import ConfigSettings
from goalflow_common.server import run_service


def main() -> None:
    run_service("config", ConfigSettings(), create_server)


if __name__ == "__main__":
    main()
