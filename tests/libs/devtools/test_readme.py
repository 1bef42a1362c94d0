"""The README's command-line walkthrough, run as written with bash against a dev stack (the
one ``make run`` starts, on free ports in its own folder), so the README cannot drift from
the CLI.

Blocks marked ``<!-- readme-test -->`` run in order in one shell, as a reader pastes them;
a block marked ``<!-- readme-test: background -->`` is the reader's second shell: it runs
after the blocks above it, next to the ones below it, and is stopped with Ctrl-C at the end.
The shell starts in a folder holding only ``.venv`` (this virtualenv) and ``.run`` (the
stack's folder), with no virtualenv on its PATH, so the README's own lines must activate
it and load the keys. Only the addresses differ from a reader's: the stack's free ports,
given as ``GOALFLOW_*_ADDRESS``.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from goalflow_dev.embedded_mongo import free_port
from tests.libs.devtools.test_devstack import DevStackRun

README = Path(__file__).resolve().parents[3] / "README.md"
BLOCK = re.compile(r"<!-- readme-test(?:: (?P<kind>\w+))? -->\n```sh\n(?P<code>.*?)```", re.S)


def readme_blocks() -> list[tuple[str, str]]:
    """(kind, code) of each marked block: kind is "" or "background"."""
    return [(m["kind"] or "", m["code"]) for m in BLOCK.finditer(README.read_text())]


def test_the_marked_blocks_are_the_cli_walkthrough():
    blocks = readme_blocks()
    kinds = [kind for kind, _ in blocks]
    assert kinds.count("background") == 1 and kinds.count("") >= 2, kinds
    setup = blocks[0][1]
    assert ". .venv/bin/activate" in setup and "set -a; . .run/dev-keys.env; set +a" in setup
    walkthrough = "".join(code for _, code in blocks)
    for command in ("goals create", "goals show", "goals update", "goals list",
                    "goals activate", "goals deactivate", "goals delete", "events send",
                    "conversions tail", "conversions list", "report", "export request",
                    "export status", "export list", "accounts create", "accounts list",
                    "keys create", "keys list", "keys revoke", "token mint", "goals simulate"):
        assert f"goalflow {command}" in walkthrough, command
    # No placeholder is left for the reader to fill in (comments may name one).
    commands = re.sub(r"\s#.*", "", walkthrough)
    assert not re.search(r"\b(ID|EXPORT_ID|N|DATE)\b|\.\.\.|\[--", commands), commands


def _shell_env(workdir: Path, stack_env: dict[str, str]) -> dict[str, str]:
    venv_bin = str(Path(sys.prefix) / "bin")
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin]
    env = {k: v for k, v in stack_env.items() if k != "VIRTUAL_ENV"}
    env["PATH"] = os.pathsep.join(path)
    env["HOME"] = str(workdir)
    for name in ("CONFIG", "TRACKER", "EXPORT"):
        env[f"GOALFLOW_{name}_ADDRESS"] = f"127.0.0.1:{stack_env[f'GOALFLOW_DEV_{name}_PORT']}"
    return env


async def _bash(script: str, cwd: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        "bash", "-c", "set -eo pipefail\n" + script, cwd=cwd, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )


@pytest.mark.timeout(150)
async def test_the_readme_cli_blocks_run_as_written(tmp_path: Path):
    stack_env = {k: v for k, v in os.environ.items() if not k.startswith("GOALFLOW_")}
    stack_env.pop("MONGODB_URI", None)
    for name in ("MONGO", "SMTP", "CONFIG", "TRACKER", "EXPORT", "EXPORT_HTTP", "EDGE"):
        stack_env[f"GOALFLOW_DEV_{name}_PORT"] = str(free_port())
    stack_env["GOALFLOW_DEV_DIR"] = str(tmp_path / ".run")
    shell = tmp_path / "shell"
    shell.mkdir()
    (shell / ".venv").symlink_to(sys.prefix)
    (shell / ".run").symlink_to(tmp_path / ".run")
    stack = DevStackRun(tmp_path, stack_env)
    background = None
    try:
        await stack.wait_ready(90)
        env = _shell_env(tmp_path, stack_env)
        blocks = readme_blocks()
        split = next(n for n, (kind, _) in enumerate(blocks) if kind == "background")
        before = "".join(code for _, code in blocks[:split])
        after = "".join(code for _, code in blocks[split + 1:])

        background = await _bash(before + blocks[split][1], shell, env)
        line = await asyncio.wait_for(background.stderr.readline(), 30)
        assert line.decode().startswith("following conversions of agent agent-7"), line

        walk = await _bash(before + after, shell, env)
        out, err = await asyncio.wait_for(walk.communicate(), 100)
        out, err = out.decode(), err.decode()
        assert walk.returncode == 0, f"{out}\n{err}"
        assert "Traceback" not in err and "error:" not in err, err
        assert "accepted 4, duplicates 0, rejected 0, conversions 1" in out
        assert "state      MAILED" in out or re.search(r"state\s+MAILED", out), out
        assert [line for line in out.splitlines() if re.search(r"goal \w+ deleted", line)]
        assert list((tmp_path / ".run" / "outbox").glob("*.eml"))

        # The second shell saw the conversion live; Ctrl-C ends it.
        os.killpg(background.pid, signal.SIGINT)
        tail_out, tail_err = await asyncio.wait_for(background.communicate(), 20)
        assert "agent-7" in tail_out.decode() and "/checkout/done" in tail_out.decode(), (
            tail_out.decode() + tail_err.decode()
        )
        assert "Traceback" not in tail_err.decode()
    finally:
        if background is not None and background.returncode is None:
            os.killpg(background.pid, signal.SIGKILL)
            await background.wait()
        stack.cleanup()
