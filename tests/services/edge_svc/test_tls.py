"""The edge serves HTTPS when the shared TLS settings name a certificate (browsers then
negotiate HTTP/2 or HTTP/1.1 by ALPN), and only HTTPS."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiohttp
import pytest
import trustme

from edge_svc.server import EdgeServer
from tests.services.edge_svc.conftest import edge_settings
from tests.services.edge_svc.helpers import bearer


async def test_https_only_with_a_certificate(edge, tmp_path: Path):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file, ca_file = (str(tmp_path / n) for n in ("c.pem", "k.pem", "ca.pem"))
    cert.cert_chain_pems[0].write_to_path(cert_file)
    cert.private_key_pem.write_to_path(key_file)
    ca.cert_pem.write_to_path(ca_file)
    server = EdgeServer(edge_settings(edge.stack, edge.export_address,
                                      tls_cert_file=cert_file, tls_key_file=key_file))
    await server.start()
    try:
        trusted = ssl.create_default_context(cafile=ca_file)
        url = f"127.0.0.1:{server.port}/goals.v1.ConfigService/ListGoals"
        async with aiohttp.ClientSession() as session:
            async with session.post(f"https://{url}", json={}, ssl=trusted,
                                    headers=bearer(edge.tenant.admin)) as response:
                assert response.status == 200
                assert await response.json() == {"sevenDayConversionsAvailable": True}
            with pytest.raises(aiohttp.ClientError):
                async with session.post(f"http://{url}", json={},
                                        headers=bearer(edge.tenant.admin)) as response:
                    await response.read()
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                async with session.post(f"https://{url}", json={},
                                        headers=bearer(edge.tenant.admin)) as response:
                    await response.read()
    finally:
        await server.stop()
