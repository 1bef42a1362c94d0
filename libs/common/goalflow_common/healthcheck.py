"""``python -m goalflow_common.healthcheck HOST:PORT``: exit 0 if the server is SERVING.

Used as the container health probe; the gRPC health service needs no key. When the
service serves TLS (``GOALFLOW_TLS_CERT_FILE``) the probe does too, trusting
``GOALFLOW_TLS_CA_FILE`` or else the system's roots."""

from __future__ import annotations

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main() -> int:
    address = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"
    ca_file = os.environ.get("GOALFLOW_TLS_CA_FILE", "")
    if ca_file:
        with open(ca_file, "rb") as pem:
            channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(pem.read()))
    elif os.environ.get("GOALFLOW_TLS_CERT_FILE"):  # TLS with a publicly trusted certificate
        channel = grpc.secure_channel(address, grpc.ssl_channel_credentials())
    else:
        channel = grpc.insecure_channel(address)
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=3
            )
        except grpc.RpcError:
            return 1
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
