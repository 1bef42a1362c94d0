"""What every benchmark shares: running a service as its own process, and failing clearly."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from goalflow_common.embedded_mongo import EmbeddedMongo
from goalflow_common.logs import configure_logging


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

    def start(self) -> None:
        with self.log_path.open("wb") as log_file:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module], env=self.env, stdin=subprocess.DEVNULL,
                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
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
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

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
