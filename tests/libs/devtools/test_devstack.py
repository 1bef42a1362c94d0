"""``make run`` (goalflow_dev.devstack) as a user runs it: real subprocesses on free ports,
real database, real gRPC and SMTP. (``goalflow-keys``: tests/libs/common/test_keys_cli.py.)"""

from __future__ import annotations

import asyncio
import os
import signal
import smtplib
import socket
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

import aiohttp
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from goalflow_common.auth import KeyStore, Role
from goalflow_common.client import make_channel
from goalflow_common.pb.goals.v1 import (
    accounts_pb2,
    accounts_pb2_grpc,
    config_pb2,
    config_pb2_grpc,
    tracker_pb2,
    tracker_pb2_grpc,
)
from goalflow_common.tokens import TokenAuthority, parse_token_keys
from goalflow_dev.devstack import (
    DevSettings,
    DevStack,
    StackError,
    dev_token_keys,
    read_env_file,
    service_table,
)
from goalflow_dev.embedded_mongo import free_port
from tests.services.config_svc.helpers import goal_request

KEY_VARS = (
    "GOALFLOW_ADMIN_KEY", "GOALFLOW_AGENT_KEY", "GOALFLOW_INGEST_KEY", "GOALFLOW_SERVICE_API_KEY",
    "GOALFLOW_PLATFORM_KEY",
)


def _descendants(root: int) -> dict[int, str]:
    """Every live process below ``root``, with its command line."""
    out = subprocess.run(
        ["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True, check=True
    ).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        pid, ppid = (int(x) for x in line.split())
        children.setdefault(ppid, []).append(pid)
    found: dict[int, str] = {}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        try:
            found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        todo.extend(children.get(pid, []))
    return found


def _started_by(env: dict[str, str]) -> list[int]:
    """Every live process that inherited this stack's environment: its children, theirs, and
    any orphan. The dev folder is unique per test, so nothing else matches."""
    marker = f"\0GOALFLOW_DEV_DIR={env['GOALFLOW_DEV_DIR']}\0".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = b"\0" + (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if marker in environ and state != "Z":
            found.append(int(entry.name))
    return found


async def _until(predicate, timeout_s: float) -> bool:
    """Poll ``predicate`` until it holds or the time is up; returns its last answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)


def _alive(pid: int) -> bool:
    """Running. A zombie has exited; it only waits for a parent (after reparenting, init or
    a subreaper beyond our control) to collect its status."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


class DevStackRun:
    """``python -m goalflow_dev.devstack`` with its output captured to files."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.out_path = workdir / "devstack.out"
        self.err_path = workdir / "devstack.err"
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "goalflow_dev.devstack"],
                stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
            )

    @property
    def stdout(self) -> str:
        return self.out_path.read_text()

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    async def wait_ready(self, timeout_s: float = 40.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = self.stdout
            if any(line.startswith("ready:") for line in text.splitlines()):
                return text
            if self.proc.poll() is not None:
                pytest.fail(f"devstack exited {self.proc.returncode}:\n{text}\n{self.stderr}")
            await asyncio.sleep(0.1)
        pytest.fail(f"devstack not ready in {timeout_s}s:\n{self.stdout}\n{self.stderr}")

    def printed_keys(self) -> dict[str, str]:
        keys = {}
        for line in self.stdout.splitlines():
            name, sep, rest = line.strip().partition("=")
            if sep and name in KEY_VARS:
                keys[name] = rest.split()[0]
        return keys

    async def wait_exit(self, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                pytest.fail(f"devstack still running {timeout_s}s after the signal")
            await asyncio.sleep(0.05)
        return self.proc.returncode

    def cleanup(self) -> None:
        """Only for a failed test: never leave the stack behind."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def stack_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a dev stack on free ports with its folder in tmp_path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOALFLOW_")}
    env.pop("MONGODB_URI", None)
    ports = {
        name: str(free_port())
        for name in ("MONGO", "SMTP", "CONFIG", "TRACKER", "EXPORT", "EXPORT_HTTP", "EDGE")
    }
    env.update({f"GOALFLOW_DEV_{name}_PORT": port for name, port in ports.items()})
    env["GOALFLOW_DEV_DIR"] = str(tmp_path / ".run")
    return env


@pytest.fixture
def run_stack(tmp_path: Path):
    runs: list[DevStackRun] = []

    def start(env: dict[str, str]) -> DevStackRun:
        run = DevStackRun(tmp_path, env)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.cleanup()


def _settings(env: dict[str, str]) -> DevSettings:
    return DevSettings(
        **{
            field: env[f"GOALFLOW_DEV_{field.upper()}"]
            for field in ("mongo_port", "smtp_port", "config_port", "tracker_port",
                          "export_port", "export_http_port", "edge_port", "dir")
        }
    )


async def _health(address: str, service: str) -> int:
    async with aio.insecure_channel(address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
    return reply.status


async def test_make_run_serves_config_mails_to_outbox_and_stops_cleanly(stack_env, run_stack):
    settings = _settings(stack_env)
    run = run_stack(stack_env)
    summary = await run.wait_ready()

    # Every service that is built is started and SERVING; the others are announced as such.
    for spec in service_table(settings):
        if spec.built():
            assert await _health(spec.address, spec.health_name) == (
                health_pb2.HealthCheckResponse.SERVING
            )
            assert spec.address in summary
        else:
            assert any(
                line.split() == [spec.name, "not", "built", "yet"]
                for line in summary.splitlines()
            )
    assert f"mongodb://127.0.0.1:{settings.mongo_port}" in summary
    assert f"127.0.0.1:{settings.smtp_port}" in summary

    # The printed keys are the saved ones, and the admin key works on the config service.
    keys = run.printed_keys()
    assert set(keys) == set(KEY_VARS)
    assert read_env_file(settings.dir / "dev-keys.env") == keys
    config = f"127.0.0.1:{settings.config_port}"
    async with make_channel(config, keys["GOALFLOW_ADMIN_KEY"]) as channel:
        stub = config_pb2_grpc.ConfigServiceStub(channel)
        created = (await stub.CreateGoal(goal_request("Dev stack checkout"))).goal
        assert created.account_id == "dev"
        listing = await stub.ListGoals(config_pb2.ListGoalsRequest())
        assert [g.goal.id for g in listing.goals] == [created.id]
        # The admin key mints tokens (the dev stack signs them with its own key).
        accounts = accounts_pb2_grpc.AccountServiceStub(channel)
        minted = await accounts.MintToken(accounts_pb2.MintTokenRequest(
            role=accounts_pb2.ROLE_AGENT, agent_id="agent-7"))
        assert minted.token.count(".") == 2
    # The platform key provisions accounts over the API.
    async with make_channel(config, keys["GOALFLOW_PLATFORM_KEY"]) as channel:
        accounts = accounts_pb2_grpc.AccountServiceStub(channel)
        listed = await accounts.ListAccounts(accounts_pb2.ListAccountsRequest())
        assert "dev" in {a.id for a in listed.accounts}
    # Tokens are enabled: one signed with the dev token key (kept in the dev dir) works.
    dev_tokens = TokenAuthority(parse_token_keys(dev_token_keys(settings.dir)))
    token = dev_tokens.mint("dev", Role.SUPERVISOR).token
    async with make_channel(config, token) as channel:
        listing = await config_pb2_grpc.ConfigServiceStub(channel).ListGoals(
            config_pb2.ListGoalsRequest())
        assert [g.goal.id for g in listing.goals] == [created.id]
    # The edge, started after the three, answers browsers' Connect JSON with the same key.
    edge = f"http://127.0.0.1:{settings.edge_port}"
    assert edge in summary
    async with aiohttp.ClientSession() as session, session.post(
            f"{edge}/goals.v1.ConfigService/ListGoals", json={},
            headers={"authorization": f"Bearer {keys['GOALFLOW_ADMIN_KEY']}"}) as response:
        assert response.status == 200
        assert created.id in await response.text()
    # ... and serves the web console (built by `make web`, which `make test` runs first),
    # whose address the summary prints.
    assert f"web console: {edge}/ " in summary
    async with aiohttp.ClientSession() as session, session.get(f"{edge}/") as response:
        assert response.status == 200
        assert '<div id="console">' in await response.text()

    # Mail sent to the sink lands in the outbox, one .eml file per message.
    message = EmailMessage()
    message["From"] = "exports@goalflow.test"
    message["To"] = "admin@dev.test"
    message["Subject"] = "Your export is ready"
    message.set_content("https://example.test/download")

    def send() -> None:
        with smtplib.SMTP("127.0.0.1", settings.smtp_port, timeout=10) as smtp:
            smtp.send_message(message)

    await asyncio.to_thread(send)
    # The sink writes the file before it answers 250, so it is there once send() returns.
    [mail] = list((settings.dir / "outbox").glob("*.eml"))
    stored = mail.read_text()
    assert "Subject: Your export is ready" in stored
    assert "Delivered-To: admin@dev.test" in stored

    # Ctrl-C stops everything it started: the database, the sink and the services.
    children = _descendants(run.proc.pid)
    commands = " ".join(children.values())
    for expected in ("nx_27017", "goalflow_dev.smtp_sink", "config_svc", "edge_svc"):
        assert expected in commands
    run.proc.send_signal(signal.SIGINT)
    assert await run.wait_exit(15) == 0, run.stderr
    assert [pid for pid in children if _alive(pid)] == []
    assert _started_by(stack_env) == []
    assert (settings.dir / "logs" / "config.log").stat().st_size > 0


async def test_given_mongodb_uri_starts_no_database_and_keys_are_reused(
    stack_env, run_stack, mongo_uri, db_prefix, mongo
):
    env = {
        **stack_env,
        "MONGODB_URI": mongo_uri,
        "GOALFLOW_AUTH_DB_NAME": f"{db_prefix}_auth",
        "GOALFLOW_CONFIG_DB_NAME": f"{db_prefix}_config",
    }
    key_file = Path(env["GOALFLOW_DEV_DIR"]) / "dev-keys.env"
    first = run_stack(env)
    summary = await first.wait_ready()
    assert "from MONGODB_URI" in summary
    children = _descendants(first.proc.pid)
    assert "nx_27017" not in " ".join(children.values())
    first_keys = read_env_file(key_file)
    first.proc.send_signal(signal.SIGTERM)
    assert await first.wait_exit(15) == 0, first.stderr
    assert [pid for pid in children if _alive(pid)] == []
    assert _started_by(env) == []

    # A revoked key is replaced on the next run; the others are reused as they are.
    store = KeyStore(mongo[f"{db_prefix}_auth"], cache_ttl_s=0)
    await store.revoke_key(first_keys["GOALFLOW_AGENT_KEY"].split("_")[1])
    second = run_stack(env)
    await second.wait_ready()
    second_keys = second.printed_keys()
    assert second_keys == read_env_file(key_file)
    for var in ("GOALFLOW_ADMIN_KEY", "GOALFLOW_INGEST_KEY", "GOALFLOW_SERVICE_API_KEY"):
        assert second_keys[var] == first_keys[var]
    assert second_keys["GOALFLOW_AGENT_KEY"] != first_keys["GOALFLOW_AGENT_KEY"]
    agent = await store.authenticate(second_keys["GOALFLOW_AGENT_KEY"])
    assert (agent.account_id, agent.role) == ("dev", Role.AGENT)
    platform = await store.authenticate(second_keys["GOALFLOW_SERVICE_API_KEY"])
    assert (platform.account_id, platform.role) == (None, Role.SERVICE)
    second.proc.send_signal(signal.SIGINT)
    assert await second.wait_exit(15) == 0, second.stderr


async def test_a_dying_service_is_named_and_the_rest_is_stopped(
    stack_env, run_stack, mongo_uri, db_prefix
):
    env = {
        **stack_env,
        "MONGODB_URI": mongo_uri,
        "GOALFLOW_AUTH_DB_NAME": f"{db_prefix}_auth",
        "GOALFLOW_CONFIG_DB_NAME": f"{db_prefix}_config",
    }
    run = run_stack(env)
    await run.wait_ready()
    children = _descendants(run.proc.pid)
    [config_pid] = [pid for pid, cmd in children.items() if "-m config_svc" in cmd]
    os.kill(config_pid, signal.SIGKILL)
    assert await run.wait_exit(15) != 0
    assert "config exited unexpectedly" in run.stderr
    assert "config.log" in run.stderr
    assert [pid for pid in children if _alive(pid)] == []
    assert _started_by(env) == []


async def test_ctrl_c_during_start_up_leaves_nothing(stack_env, run_stack):
    pid_file = Path(stack_env["GOALFLOW_DEV_DIR"]) / "mongo" / "nx-27017.pid"
    run = run_stack(stack_env)
    # Once the database is up, the keys and services are still to come.
    assert await _until(lambda: pid_file.exists() or run.proc.poll() is not None, 30)
    assert run.proc.poll() is None, run.stderr
    run.proc.send_signal(signal.SIGINT)
    assert await run.wait_exit(15) == 0, run.stderr
    assert "ready:" not in run.stdout
    assert _started_by(stack_env) == []


async def test_a_killed_stack_takes_its_services_along_and_the_next_run_recovers(
    stack_env, run_stack
):
    first = run_stack(stack_env)
    await first.wait_ready()
    children = _descendants(first.proc.pid)
    [db_pid] = [pid for pid, cmd in children.items() if "nx_27017" in cmd]
    try:
        first.proc.kill()  # no chance to clean up
        first.proc.wait()
        # Services and the sink die with their parent (PR_SET_PDEATHSIG) ...
        assert await _until(lambda: _started_by(stack_env) == [db_pid], 10), (
            _started_by(stack_env)
        )
        # ... and the next run stops the database the killed one left behind, then starts.
        second = run_stack(stack_env)
        summary = await second.wait_ready()
        assert f"left behind (pid {db_pid})" in summary
        assert not _alive(db_pid)
        second.proc.send_signal(signal.SIGINT)
        assert await second.wait_exit(15) == 0, second.stderr
        assert _started_by(stack_env) == []
    finally:
        if _alive(db_pid):
            os.kill(db_pid, signal.SIGKILL)


async def test_a_taken_port_is_refused_before_anything_starts(stack_env, run_stack):
    settings = _settings(stack_env)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", settings.config_port))
        busy.listen()
        run = run_stack(stack_env)
        assert await run.wait_exit(20) == 1
    assert f"port {settings.config_port} (config gRPC) is already in use" in run.stderr
    assert "GOALFLOW_DEV_CONFIG_PORT" in run.stderr
    assert not (settings.dir / "mongo").exists()


RESTARTS = 10


# Ten restarts take 25-35 s here (2-4 s each, on 2 busy cores); before the fix 1-2 of them
# crashed in each of three runs.
@pytest.mark.timeout(120)
async def test_restarts_while_this_process_has_live_grpc_calls_start_every_child(
    stack_env, mongo_uri, db_prefix
):
    """Forking while gRPC's threads run must not run Python in the child before exec: with
    ``preexec_fn`` 2 of 4-7 such restarts died of SIGSEGV before reaching ``exec``."""
    databases = {f"GOALFLOW_{part.upper()}_DB_NAME": f"{db_prefix}_{part}"
                 for part in ("config", "tracker")}
    env = {"config": databases, "tracker": databases}
    stack = DevStack(_settings(stack_env).model_copy(update={
        "mongodb_uri": mongo_uri, "auth_db_name": f"{db_prefix}_auth",
    }))
    tracker = next(spec for spec in stack.services if spec.name == "tracker").address
    config = next(spec for spec in stack.services if spec.name == "config").address
    answered = 0

    async def unary_calls(stub: tracker_pb2_grpc.TrackerServiceStub) -> None:
        nonlocal answered
        while True:
            await stub.ListConversions(tracker_pb2.ListConversionsRequest(), timeout=10)
            answered += 1

    try:
        await asyncio.to_thread(stack.start, ["config", "tracker"], env=env)
        key = stack.keys["GOALFLOW_ADMIN_KEY"]
        async with make_channel(tracker, key) as channel:
            stub = tracker_pb2_grpc.TrackerServiceStub(channel)
            # Live calls for the whole run: a subscription stream held open on the tracker
            # and unary calls one after another (gRPC's C-core threads stay busy).
            subscription = stub.SubscribeConversions(
                tracker_pb2.SubscribeConversionsRequest(agent_id="agent-1")
            )
            await asyncio.wait_for(subscription.initial_metadata(), 10)
            calls = asyncio.create_task(unary_calls(stub))
            exits: list[int | None] = []
            failures: list[str] = []
            pids: set[int] = set()
            try:
                for _ in range(RESTARTS):
                    [old] = [child for spec, child in stack.running if spec.name == "config"]
                    await asyncio.to_thread(stack.stop_service, "config")
                    exits.append(old.proc.returncode)
                    before = answered
                    try:
                        await asyncio.to_thread(stack.start_services, ["config"], env=env)
                    except StackError as err:
                        failures.append(str(err).splitlines()[0])
                        continue
                    [new] = [child for spec, child in stack.running if spec.name == "config"]
                    pids.add(new.proc.pid)
                    # The pid Popen returned runs the service itself (the launcher exec'd).
                    assert _descendants(os.getpid())[new.proc.pid].split() == [
                        sys.executable, "-m", "config_svc"
                    ]
                    assert await _health(config, "goals.v1.ConfigService") == (
                        health_pb2.HealthCheckResponse.SERVING
                    )
                    assert await _until(lambda before=before: answered > before, 10), (
                        calls.exception() if calls.done() else "the unary calls stopped"
                    )
            finally:
                calls.cancel()
            assert not calls.done() or calls.cancelled(), calls.exception()
            assert not subscription.done(), await subscription.code()
            subscription.cancel()
        assert failures == [], f"{len(failures)} of {RESTARTS} restarts failed: {failures}"
        assert len(pids) == RESTARTS
        # Each stopped child exited on its own after SIGTERM; none was killed by a signal.
        assert exits == [0] * RESTARTS
    finally:
        await asyncio.to_thread(stack.stop)
