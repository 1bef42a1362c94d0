"""What every benchmark shares: running a service as its own process, and failing clearly."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from goalflow_common.client import make_channel
from goalflow_common.db import connect
from goalflow_common.logs import configure_logging
from goalflow_common.pb.goals.v1 import common_pb2
from goalflow_dev.embedded_mongo import EmbeddedMongo, free_port
from goalflow_dev.processes import terminate

HOST = "127.0.0.1"


class BenchError(Exception):
    """The benchmark could not run to the end, or a check failed; the message says why."""


class Service:
    """``python -m <module>`` in its own session; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, module: str, env: dict[str, str], log_path: Path) -> None:
        self.module = module
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise BenchError(f"{self.module} is not running")
        return self.proc.pid

    def start(self, *args: str) -> None:
        with self.log_path.open("wb") as log_file:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module, *args], env=self.env,
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(
                f"{self.module} exited with {self.proc.returncode}:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 25) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace")
            return "\n".join(line[:400] for line in text.splitlines()[-lines:])
        return ""

    def stop(self, timeout_s: float = 15.0) -> None:
        proc, self.proc = self.proc, None
        terminate(proc, timeout_s)

    async def wait_serving(self, address: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with aio.insecure_channel(address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                self.check_alive()
                with contextlib.suppress(grpc.RpcError):
                    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                await asyncio.sleep(0.1)
        raise BenchError(f"{self.module} not SERVING within {timeout_s}s:\n{self.log_tail()}")


    async def wait_listening(self, host: str, port: int, timeout_s: float = 15.0) -> None:
        """For a process that is not a gRPC service (the SMTP sink)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection(host, port)
                writer.close()
                return
            await asyncio.sleep(0.1)
        raise BenchError(f"{self.module} not listening on {port}:\n{self.log_tail()}")


def database_names(run_id: str) -> dict[str, str]:
    """One set of databases per run, as the settings' variables name them."""
    return {
        f"GOALFLOW_{part.upper()}_DB_NAME": f"bench_{run_id}_{part}"
        for part in ("auth", "config", "tracker", "export")
    }


@dataclass
class BenchStack:
    """The three services and an SMTP sink as processes on free loopback ports (not yet
    started); ``address`` has config, tracker, export, http and smtp."""

    address: dict[str, str]
    config: Service
    tracker: Service
    export: Service
    sink: Service
    outbox: Path

    @property
    def services(self) -> list[Service]:
        return [self.config, self.tracker, self.sink, self.export]

    async def start_rest(self) -> None:
        """Start tracker, sink and export (config first, on its own, by the caller) and wait
        until each serves."""
        self.tracker.start()
        self.export.start()
        smtp_host, smtp_port = self.address["smtp"].rsplit(":", 1)
        self.sink.start("--host", smtp_host, "--port", smtp_port, "--outbox", str(self.outbox))
        await self.tracker.wait_serving(self.address["tracker"])
        await self.export.wait_serving(self.address["export"])
        await self.sink.wait_listening(smtp_host, int(smtp_port))


def bench_stack(workdir: Path, uri: str, names: dict[str, str], service_key: str) -> BenchStack:
    ports = {name: free_port(HOST) for name in ("config", "tracker", "export", "http", "smtp")}
    address = {name: f"{HOST}:{port}" for name, port in ports.items()}
    base_env = {
        **os.environ,
        **names,
        "PYTHONUNBUFFERED": "1",
        "MONGODB_URI": uri,
        "GOALFLOW_GRPC_HOST": HOST,
        "GOALFLOW_LOG_LEVEL": "WARNING",
        "GOALFLOW_SHUTDOWN_GRACE_S": "2",
        "GOALFLOW_SERVICE_API_KEY": service_key,
        "GOALFLOW_CONFIG_ADDRESS": address["config"],
        "GOALFLOW_TRACKER_ADDRESS": address["tracker"],
    }

    def service(module: str, env: dict[str, str]) -> Service:
        return Service(module, {**base_env, **env}, workdir / f"{module}.log")

    return BenchStack(
        address=address,
        config=service("config_svc", {"GOALFLOW_GRPC_PORT": str(ports["config"])}),
        tracker=service("tracker_svc", {"GOALFLOW_GRPC_PORT": str(ports["tracker"])}),
        export=service("export_svc", {
            "GOALFLOW_GRPC_PORT": str(ports["export"]),
            "GOALFLOW_HTTP_PORT": str(ports["http"]),
            "GOALFLOW_PUBLIC_BASE_URL": f"http://{address['http']}",
            "GOALFLOW_SMTP_HOST": HOST,
            "GOALFLOW_SMTP_PORT": str(ports["smtp"]),
            "GOALFLOW_LINK_SECRET": secrets.token_hex(32),
        }),
        sink=service("goalflow_dev.smtp_sink", {}),
        outbox=workdir / "outbox",
    )


@dataclass
class BenchRun:
    """One benchmark run: its options, workspace, the services it starts (stopped by
    ``run_with_services``) and the client channels it opens (closed by ``bench_databases``)."""

    args: Any
    workdir: Path
    uri: str
    mongo_pid: int | None = None
    max_message_bytes: int = 8 * 1024 * 1024
    services: list[Service] = field(default_factory=list)
    channels: list[aio.Channel] = field(default_factory=list)

    def channel(self, address: str, key: str) -> aio.Channel:
        channel = make_channel(address, key, max_message_bytes=self.max_message_bytes)
        self.channels.append(channel)
        return channel


@contextlib.asynccontextmanager
async def bench_databases(
    bench: BenchRun, external_db: bool, run_id: str
) -> AsyncIterator[tuple[Any, dict[str, str]]]:
    """A database client and the run's database names; on the way out the run's channels
    are closed and, on a real MongoDB, its databases dropped (leave it as we found it)."""
    names = database_names(run_id)
    client = await connect(bench.uri, app_name="goalflow-bench", attempts=3)
    try:
        yield client, names
    finally:
        for channel in bench.channels:
            await channel.close()
        if external_db:
            for name in names.values():
                with contextlib.suppress(Exception):
                    await client.drop_database(name)
        await client.close()


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1]


def date(day: dt.date) -> common_pb2.Date:
    return common_pb2.Date(year=day.year, month=day.month, day=day.day)


@dataclass
class Workspace:
    """A benchmark's temporary folder and database; ``stack`` stops what is added to it."""

    workdir: Path
    uri: str
    external_db: bool
    mongo_pid: int | None
    stack: contextlib.ExitStack


@contextlib.contextmanager
def workspace() -> Iterator[Workspace]:
    """A temporary folder, and ``MONGODB_URI`` or an embedded database started in it; all
    of it (and whatever is added to the stack) is stopped and removed on the way out."""
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gf-bench-")))
        uri = os.environ.get("MONGODB_URI", "")
        mongo_pid = None
        if not uri:
            mongo = EmbeddedMongo(workdir / "mongo")
            stack.callback(mongo.stop)
            try:
                mongo.start()
            except (OSError, RuntimeError) as exc:  # TimeoutError is an OSError
                raise BenchError(f"embedded database did not start: {exc}") from exc
            uri, mongo_pid = mongo.uri, mongo.pid
        yield Workspace(workdir, uri, bool(os.environ.get("MONGODB_URI")), mongo_pid, stack)


def _sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwind like Ctrl-C, so every child is stopped


def run_main(name: str, body: Callable[[], None]) -> int:
    """Run a benchmark's body with SIGTERM unwinding like Ctrl-C: 0 when it finished, 1 with
    the reason on a BenchError, 130 when interrupted (everything started is stopped)."""
    configure_logging("WARNING")  # library logs to stderr, never into the figures
    previous = signal.signal(signal.SIGTERM, _sigterm)
    try:
        body()
    except BenchError as exc:
        print(f"[{name}] failed: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print(f"[{name}] interrupted; everything it started is stopped", file=sys.stderr,
              flush=True)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


# -- measuring processes -------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    """Progress for a person, on stderr (stdout carries only the figures)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024  # kB
    raise BenchError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


class CpuMeter:
    """CPU used by each watched process between ``start()`` and ``report()``."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._start: dict[str, float] = {}
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def report(self, phase: str) -> dict[str, float]:
        """Log the cores each process used since ``start()``; return its CPU seconds."""
        wall = time.perf_counter() - self._t0
        used = {name: cpu_seconds(pid) - self._start[name] for name, pid in self.pids.items()}
        shares = ", ".join(f"{name} {seconds / wall:.2f}" for name, seconds in used.items())
        log(f"{phase}: {wall:.1f}s wall; CPU cores used: {shares} (machine: {os.cpu_count()})")
        return used


def start_profilers(directory: str | None, pids: dict[str, int]) -> list[subprocess.Popen]:
    """py-spy recording each service process during the ingest, if ``--profile`` asks."""
    if not directory:
        return []
    py_spy = os.environ.get("PY_SPY") or shutil.which("py-spy")
    if py_spy is None:
        raise BenchError("--profile needs py-spy on PATH or in $PY_SPY")
    Path(directory).mkdir(parents=True, exist_ok=True)
    procs = []
    for name, pid in pids.items():
        if name == "bench":
            continue
        # Folded stacks ("raw"): one line per stack with its sample count, easy to total.
        output = Path(directory) / f"{name}.folded"
        procs.append(subprocess.Popen(
            [py_spy, "record", "--pid", str(pid), "--output", str(output), "--format", "raw",
             "--rate", "100", "--nonblocking"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        ))
    time.sleep(1.0)  # attached before the first batch
    return procs


def stop_profilers(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        log(f"py-spy: {err.decode(errors='replace').strip().splitlines()[-1:]}")


def run_with_services(
    name: str,
    make_run: Callable[[Workspace], Any],
    run: Callable[[Any, bool], Awaitable[dict[str, Any]]],
) -> int:
    """The body of a benchmark that starts services: a workspace, a ``Run`` made from it
    (its ``services`` are stopped first, then the database), the figures printed one
    ``name value`` line each on stdout, and the service logs' tails on a failure."""
    figures: dict[str, Any] = {}

    def body() -> None:
        with workspace() as ws:
            bench = make_run(ws)
            ws.stack.callback(lambda: [s.stop() for s in reversed(bench.services)])
            try:
                figures.update(asyncio.run(run(bench, ws.external_db)))
            except BenchError:
                for service in bench.services:
                    tail = service.log_tail(10)
                    if tail:
                        log(f"{service.module} log ends with:\n{tail}")
                raise

    code = run_main(name, body)
    for key, value in figures.items():
        print(f"{key} {value}", flush=True)
    return code
