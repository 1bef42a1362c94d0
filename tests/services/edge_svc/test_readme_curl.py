"""The README's curl example of Connect JSON, run with bash as written against a real edge
(only its address differs: ``make run``'s 8080 becomes the test edge's port)."""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path

README = Path(__file__).resolve().parents[3] / "README.md"
BLOCK = re.compile(r"<!-- edge-curl -->\n```sh\n(?P<code>.*?)```", re.S)


async def test_the_readme_curl_example_works(edge):
    [code] = [m["code"] for m in BLOCK.finditer(README.read_text())]
    assert "http://127.0.0.1:8080/" in code
    script = code.replace("http://127.0.0.1:8080/", f"{edge.url}/")
    process = await asyncio.create_subprocess_exec(
        "bash", "-c", "set -eo pipefail\n" + script,
        env={**os.environ, "GOALFLOW_ADMIN_KEY": edge.tenant.admin},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    assert json.loads(out) == {"sevenDayConversionsAvailable": True}
