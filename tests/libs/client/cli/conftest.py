"""The whole stack as subprocesses for the ``goalflow`` CLI tests (the benchmarks' stack:
config, tracker and export services and an SMTP sink on free loopback ports) on the
session's database, once per test module; and a runner for the CLI, also a subprocess."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from bench.harness import bench_stack, database_names
from goalflow_common.auth import KeyStore, Role
from tests.conftest import TOKEN_KEYS

CLI = (sys.executable, "-m", "goalflow_client.cli")


@dataclass(frozen=True)
class Run:
    """One finished ``goalflow`` invocation."""

    code: int
    out: str
    err: str

    @property
    def error_line(self) -> str:
        """The one line an error prints on stderr."""
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, self.err
        return lines[0]


@dataclass
class CliStack:
    """Running services; ``env`` points the CLI at them (no key: each run picks one)."""

    account_id: str
    keys: dict[Role, str]
    env: dict[str, str]
    outbox: Path
    workdir: Path

    def cli_env(self, key: Role | str | None = Role.ADMIN, **extra: str) -> dict[str, str]:
        env = dict(self.env, **extra)
        if key is not None:
            env["GOALFLOW_KEY"] = self.keys[key] if isinstance(key, Role) else key
        return env

    async def start(self, *args: str, key: Role | str | None = Role.ADMIN,
                    **extra: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *CLI, *args, env=self.cli_env(key, **extra), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )

    async def run(self, *args: str, key: Role | str | None = Role.ADMIN, timeout_s: float = 40,
                  **extra: str) -> Run:
        """``goalflow ARGS`` with the key of ``key`` (a role, a literal key, or none) in
        GOALFLOW_KEY. Whatever happens, it must never print a traceback."""
        return await finish(await self.start(*args, key=key, **extra), timeout_s)


async def finish(proc: asyncio.subprocess.Process, timeout_s: float = 40) -> Run:
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        pytest.fail(f"goalflow still running after {timeout_s}s:\n{out.decode()}\n{err.decode()}")
    run = Run(proc.returncode, out.decode(), err.decode())
    assert "Traceback" not in run.err, run.err
    return run


def _clean_env() -> dict[str, str]:
    """This process's environment without any GOALFLOW_* or MONGODB_URI setting."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith("GOALFLOW_") and k != "MONGODB_URI"}


@pytest.fixture(scope="module")
async def cli_stack(mongo_uri: str, tmp_path_factory: pytest.TempPathFactory
                    ) -> AsyncIterator[CliStack]:
    workdir = tmp_path_factory.mktemp("goalflow-cli")
    names = database_names(f"cli{uuid.uuid4().hex[:8]}")
    client: AsyncMongoClient = AsyncMongoClient(mongo_uri, tz_aware=True)
    store = KeyStore(client[names["GOALFLOW_AUTH_DB_NAME"]])
    account = f"acct-{uuid.uuid4().hex[:8]}"
    await store.create_account(account, time_zone="UTC")
    keys = {role: await store.create_key(account, role)
            for role in (Role.ADMIN, Role.AGENT, Role.INGEST)}
    keys[Role.PLATFORM] = await store.create_key(None, Role.PLATFORM, label="cli tests")
    service_key = await store.create_key(None, Role.SERVICE, label="cli tests")
    stack = bench_stack(workdir, mongo_uri, names, service_key)
    stack.config.env["GOALFLOW_TOKEN_KEYS"] = TOKEN_KEYS  # token mint works
    try:
        stack.config.start()
        await stack.config.wait_serving(stack.address["config"])
        await stack.start_rest()
        cli_env = {
            **_clean_env(),
            "GOALFLOW_CONFIG_ADDRESS": stack.address["config"],
            "GOALFLOW_TRACKER_ADDRESS": stack.address["tracker"],
            "GOALFLOW_EXPORT_ADDRESS": stack.address["export"],
        }
        yield CliStack(account, keys, cli_env, stack.outbox, workdir)
    finally:
        for service in reversed(stack.services):
            service.stop()
        for name in names.values():
            await client.drop_database(name)
        await client.close()
