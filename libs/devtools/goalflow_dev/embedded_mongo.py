"""The embedded database: nx-27017 (MongoDB wire protocol over SQLite) as a subprocess.

Used by ``make run``, the tests and the benchmarks when no ``MONGODB_URI`` points at a real
MongoDB. Everything talks to it through the real driver over TCP on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from goalflow_dev.processes import terminate

_LAUNCH = "from nx_27017.nx_27017 import main; main()"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _ensure_free(host: str, port: int) -> None:
    """Raise OSError if something already listens on ``host:port``."""
    with socket.socket() as sock:
        # SO_REUSEADDR: connections of a previous run in TIME_WAIT do not count as taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise OSError(exc.errno, f"nx-27017 port {host}:{port} is already in use") from exc


class EmbeddedMongo:
    """One nx-27017 server process with its data in ``data_dir``."""

    def __init__(self, data_dir: Path, port: int = 0, host: str = "127.0.0.1") -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port or free_port(host)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://{self.host}:{self.port}"

    def start(self, timeout_s: float = 20.0) -> None:
        """Start the server and wait until it accepts connections."""
        # Readiness is "the port accepts connections", so another listener on the port would
        # pass for this server while nx-27017 fails to bind and exits: refuse up front.
        _ensure_free(self.host, self.port)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_file = self.data_dir / "nx-27017.log"
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _LAUNCH,
                "--data-dir",
                str(self.data_dir),
                "--host",
                self.host,
                "--port",
                str(self.port),
                "--log-file",
                str(log_file),
                "--pid-file",
                str(self.data_dir / "nx-27017.pid"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, and we stop it.
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code, self._proc = self._proc.returncode, None
                raise RuntimeError(f"nx-27017 exited with {code}; see {log_file}")
            with contextlib.suppress(OSError), socket.create_connection(
                (self.host, self.port), timeout=0.2
            ):
                if self._proc.poll() is None:
                    return
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"nx-27017 did not listen on {self.uri} within {timeout_s}s")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server: SIGTERM, then SIGKILL if it does not exit in time."""
        proc, self._proc = self._proc, None
        terminate(proc, timeout_s)

    def kill(self) -> None:
        """Stop abruptly (fault tests)."""
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
        self._proc = None

    @property
    def pid(self) -> int | None:
        """Process id of the server while this object manages one."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> EmbeddedMongo:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def astart(self) -> None:
        await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)
