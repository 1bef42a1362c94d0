"""The domain layers load no transport or database code: every module under
``services/*/domain/`` imports without gRPC, PyMongo, Motor, aiohttp, connectrpc, hypercorn or
the generated protobuf code (README: the domain is testable without gRPC or MongoDB).

Checked in a fresh interpreter, since this test process has loaded all of them already."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SERVICES = Path(__file__).resolve().parents[2] / "services"
FORBIDDEN = ("grpc", "pymongo", "motor", "aiohttp", "goalflow_common.pb", "connectrpc",
             "hypercorn")

# Imports each module named on the command line, then prints, per module, the forbidden
# modules that importing it added to sys.modules.
PROBE = """
import importlib, json, sys
forbidden = tuple(sys.argv[1].split(","))
found = {}
for name in sys.argv[2:]:
    importlib.import_module(name)
    loaded = sorted(m for m in sys.modules if m in forbidden or m.startswith(
        tuple(f + "." for f in forbidden)))
    if loaded:
        found[name] = loaded
        break  # later modules would only repeat what this one loaded
print(json.dumps(found))
"""


def domain_modules() -> list[str]:
    names = []
    for path in sorted(SERVICES.glob("*/domain/*.py")):
        parts = path.relative_to(SERVICES).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_domain_modules_load_no_transport_or_database_code():
    modules = domain_modules()
    # The services' domains, each with several modules: a glob that found nothing would
    # pass vacuously.
    assert {name.split(".")[0] for name in modules} == {"config_svc", "export_svc",
                                                        "tracker_svc", "edge_svc"}
    assert len(modules) > 20, modules
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(FORBIDDEN), *modules],
        capture_output=True, text=True, timeout=50, check=False,
    )
    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout) == {}, "domain modules loading forbidden code"
