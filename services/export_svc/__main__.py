"""``python -m export_svc``: run the export service (gRPC, downloads, workers) until SIGTERM."""

from __future__ import annotations

from export_svc.server import create_server
from export_svc.settings import ExportSettings
from goalflow_common.server import run_service


def main() -> None:
    run_service("export", ExportSettings(), create_server)


if __name__ == "__main__":
    main()
