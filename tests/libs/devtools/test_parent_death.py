"""goalflow_dev.parent_death: a child started through it is SIGTERMed when the process
that started it dies, and nothing in the repository starts children with ``preexec_fn``."""

from __future__ import annotations

import ast
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from goalflow_dev.parent_death import dying_with_this_process

ROOT = Path(__file__).resolve().parents[3]
NOT_OURS = {".venv", "node_modules", ".run", "build", ".git", "pb"}

# Starts a sleeper through the launcher, prints its pid, then waits to be killed.
PARENT = """
import subprocess, sys, time
from goalflow_dev.parent_death import dying_with_this_process
child = subprocess.Popen(dying_with_this_process(
    [sys.executable, "-c", "import time; time.sleep(300)"]), start_new_session=True)
print(child.pid, flush=True)
time.sleep(300)
"""


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return None


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    except OSError:
        return []


async def test_the_child_runs_the_command_itself_and_gets_sigterm_when_its_parent_is_killed():
    parent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PARENT, stdout=asyncio.subprocess.PIPE
    )
    try:
        child = int(await asyncio.wait_for(parent.stdout.readline(), 20))
        # The launcher execs the command: same pid, the command's own command line.
        wanted = [sys.executable, "-c", "import time; time.sleep(300)"]
        deadline = time.monotonic() + 20
        while _cmdline(child) != wanted:
            assert time.monotonic() < deadline, _cmdline(child)
            await asyncio.sleep(0.02)
        parent.kill()  # no chance to clean up
        await parent.wait()
        deadline = time.monotonic() + 10
        while _state(child) not in (None, "Z"):
            assert time.monotonic() < deadline, "the child outlived its killed parent"
            await asyncio.sleep(0.02)
    finally:
        if parent.returncode is None:
            parent.kill()
            await parent.wait()


def test_a_child_whose_parent_is_already_gone_starts_nothing(tmp_path):
    marker = tmp_path / "started"
    command = dying_with_this_process(
        [sys.executable, "-c", f"open({str(marker)!r}, 'w')"]
    )
    # As if this process had died before the launcher set the signal: it was reparented.
    command[command.index(str(os.getpid()))] = str(os.getpid() + 1_000_000)
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "is gone; not starting" in done.stderr
    assert not marker.exists()


def _python_files() -> list[Path]:
    files = []
    for folder, subfolders, names in os.walk(ROOT):
        subfolders[:] = [name for name in subfolders if name not in NOT_OURS]
        files += [Path(folder, name) for name in names if name.endswith(".py")]
    return files


def test_no_code_in_the_repository_starts_a_child_with_preexec_fn():
    """Python run between fork and exec in a process with gRPC's threads crashed children
    with SIGSEGV; start them with Popen's C-level options (start_new_session, env, ...)."""
    found = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
            if isinstance(node, ast.keyword) and node.arg == "preexec_fn":
                found.append(f"{path.relative_to(ROOT)}:{node.value.lineno}")
    assert found == []
