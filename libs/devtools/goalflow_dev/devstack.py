"""``python -m goalflow_dev.devstack`` (``make run``): the whole system on one machine.

Starts the embedded database (unless ``MONGODB_URI`` is set), an SMTP sink that writes mail
to ``.run/outbox/``, a development account with its keys, and every service that is built,
each as a subprocess logging to ``.run/logs/<name>.log``. It prints where everything
listens once all services report SERVING. Ctrl-C or SIGTERM stops everything it started;
if any child dies on its own, it says which one and stops the rest with a non-zero exit.

This is a CLI front-end: it writes plain text for a person, not JSON logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import itertools
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TextIO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from goalflow_common.auth import KeyStore, Role
from goalflow_common.errors import Unauthenticated
from goalflow_dev.embedded_mongo import EmbeddedMongo
from goalflow_dev.parent_death import dying_with_this_process

HOST = "127.0.0.1"
CONSOLE_DIR = Path(__file__).resolve().parents[3] / "web" / "dist" / "console"
"""The built web console (``make web``), served by the edge when it is there."""
DEV_ACCOUNT = "dev"

# The dev keys, as variables in .run/dev-keys.env: (account, role). None = platform-wide.
KEY_VARS: dict[str, tuple[str | None, Role]] = {
    "GOALFLOW_ADMIN_KEY": (DEV_ACCOUNT, Role.ADMIN),
    "GOALFLOW_AGENT_KEY": (DEV_ACCOUNT, Role.AGENT),
    "GOALFLOW_INGEST_KEY": (DEV_ACCOUNT, Role.INGEST),
    "GOALFLOW_SERVICE_API_KEY": (None, Role.SERVICE),
    # Provisions accounts and keys over the API (goalflow accounts/keys, goalflow-keys). Made
    # here directly in the auth database, as `goalflow-keys bootstrap` makes the first one.
    "GOALFLOW_PLATFORM_KEY": (None, Role.PLATFORM),
}
KEY_NOTES = {
    "GOALFLOW_SERVICE_API_KEY": "platform service key (the services call each other)",
    "GOALFLOW_PLATFORM_KEY": "platform key (accounts and keys: goalflow accounts/keys, "
                             "goalflow-keys)",
}


class DevSettings(BaseSettings):
    """Where the dev stack listens and keeps its files (env prefix ``GOALFLOW_DEV_``)."""

    model_config = SettingsConfigDict(
        env_prefix="GOALFLOW_DEV_", use_attribute_docstrings=True, extra="ignore", frozen=True
    )

    dir: Path = Path(".run")
    """Folder for the database files, outbox, logs and dev keys."""

    mongo_port: int = 27117
    """Port of the embedded database (not used when ``MONGODB_URI`` is set)."""

    smtp_port: int = 8025
    """Port of the SMTP sink."""

    config_port: int = 50051
    """gRPC port of the config service."""

    tracker_port: int = 50052
    """gRPC port of the tracker service."""

    export_port: int = 50053
    """gRPC port of the export service."""

    export_http_port: int = 8083
    """HTTP port of the export service (signed download links)."""

    edge_port: int = 8080
    """Port of the edge (Connect, gRPC-Web and gRPC for browsers; HTTP/1.1 and h2c)."""

    start_timeout_s: float = 60.0
    """How long each part may take to come up before the stack gives up."""

    stop_timeout_s: float = 10.0
    """How long each child gets to exit after SIGTERM before it is killed."""

    mongodb_uri: str = Field(default="", validation_alias="MONGODB_URI")
    """An existing MongoDB to use instead of starting the embedded one."""

    auth_db_name: str = Field(default="goalflow_auth", validation_alias="GOALFLOW_AUTH_DB_NAME")
    """Database holding accounts and hashed keys (the services read the same variable)."""


@dataclass(frozen=True)
class ServiceSpec:
    """One service the stack runs when its package has a ``__main__``."""

    name: str
    package: str
    grpc_port: int
    health_name: str
    env: dict[str, str] = field(default_factory=dict)
    http_port: int | None = None
    web: bool = False
    """Its port speaks HTTP to browsers too (the edge): printed as a URL."""

    @property
    def address(self) -> str:
        return f"{HOST}:{self.grpc_port}"

    def built(self) -> bool:
        try:
            return importlib.util.find_spec(f"{self.package}.__main__") is not None
        except ImportError:
            return False


def _dev_secret(path: Path) -> str:
    """A random secret kept in ``path`` (owner-only), made on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def dev_link_secret(folder: Path) -> str:
    """The development HMAC key for download links, kept in ``<dev dir>/link-secret`` so
    links mailed by an earlier run stay valid."""
    return _dev_secret(folder / "link-secret")


def dev_token_keys(folder: Path) -> str:
    """``GOALFLOW_TOKEN_KEYS`` of the dev stack: one signing key (kid ``dev``) kept in
    ``<dev dir>/token-key``, so tokens minted before a restart stay valid until they
    expire. Every service gets it; a ``GOALFLOW_TOKEN_KEYS`` in the environment wins (to
    try a rotation, say)."""
    return f"dev:{_dev_secret(folder / 'token-key')}"


def console_url(edge: ServiceSpec) -> str:
    """Where the edge ``edge`` serves the web console."""
    return f"http://{edge.address}/"


def service_table(settings: DevSettings) -> list[ServiceSpec]:
    """The services in start order, each with the addresses of the others it calls."""
    config = f"{HOST}:{settings.config_port}"
    tracker = f"{HOST}:{settings.tracker_port}"
    return [
        ServiceSpec(
            "config", "config_svc", settings.config_port, "goals.v1.ConfigService",
            {"GOALFLOW_TRACKER_ADDRESS": tracker},
        ),
        ServiceSpec(
            "tracker", "tracker_svc", settings.tracker_port, "goals.v1.TrackerService",
            {"GOALFLOW_CONFIG_ADDRESS": config},
        ),
        ServiceSpec(
            "export", "export_svc", settings.export_port, "goals.v1.ExportService",
            {
                "GOALFLOW_CONFIG_ADDRESS": config,
                "GOALFLOW_TRACKER_ADDRESS": tracker,
                "GOALFLOW_HTTP_PORT": str(settings.export_http_port),
                "GOALFLOW_PUBLIC_BASE_URL": f"http://{HOST}:{settings.export_http_port}",
                "GOALFLOW_SMTP_HOST": HOST,
                "GOALFLOW_SMTP_PORT": str(settings.smtp_port),
                "GOALFLOW_LINK_SECRET": dev_link_secret(settings.dir),
            },
            http_port=settings.export_http_port,
        ),
        # After the three: it forwards to them. Its health check answers over gRPC (h2c)
        # on the same port, so the stack waits for it like for the others.
        ServiceSpec(
            "edge", "edge_svc", settings.edge_port, "",
            {
                "GOALFLOW_HTTP_PORT": str(settings.edge_port),
                "GOALFLOW_CONFIG_ADDRESS": config,
                "GOALFLOW_TRACKER_ADDRESS": tracker,
                "GOALFLOW_EXPORT_ADDRESS": f"{HOST}:{settings.export_port}",
                **({"GOALFLOW_CONSOLE_DIR": str(CONSOLE_DIR)}
                   if (CONSOLE_DIR / "index.html").is_file() else {}),
            },
            web=True,
        ),
    ]


# --- dev account and keys -------------------------------------------------------------


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines; blank lines and # comments are skipped."""
    values: dict[str, str] = {}
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                name, _, value = line.partition("=")
                values[name.strip()] = value.strip()
    return values


def write_env_file(path: Path, values: dict[str, str]) -> None:
    """Write the keys readable by the owner only, atomically."""
    text = (
        "# goalflow development keys, written by `make run` and reused while they work.\n"
        f"# Load them into a shell with: set -a; . {path}; set +a\n"
        + "".join(f"{name}={value}\n" for name, value in values.items())
    )
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, path)


async def _still_valid(store: KeyStore, key: str, account: str | None, role: Role) -> bool:
    if not key:
        return False
    try:
        principal = await store.authenticate(key)
    except Unauthenticated:
        return False
    return principal.account_id == account and principal.role is role


async def ensure_dev_keys(uri: str, auth_db: str, path: Path) -> dict[str, str]:
    """Create the dev account if missing; reuse the saved keys that still authenticate and
    issue new ones for the rest. Returns ``{variable: key}`` and saves it to ``path``."""
    saved = read_env_file(path)
    client: AsyncMongoClient = AsyncMongoClient(
        uri, appname="goalflow-devstack", tz_aware=True, serverSelectionTimeoutMS=10_000
    )
    try:
        store = KeyStore(client[auth_db], cache_ttl_s=0)
        await store.create_account(DEV_ACCOUNT, name="Development", time_zone="UTC")
        keys: dict[str, str] = {}
        for var, (account, role) in KEY_VARS.items():
            key = saved.get(var, "")
            if not await _still_valid(store, key, account, role):
                key = await store.create_key(account, role, label=f"devstack {var}")
            keys[var] = key
    finally:
        await client.close()
    write_env_file(path, keys)
    return keys


# --- processes ------------------------------------------------------------------------


class _StopRequested(Exception):
    """Ctrl-C or SIGTERM arrived while starting up."""


class StackError(Exception):
    """Start-up failed or a child died; the message says what and where to look."""


@dataclass
class _Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path


def _write(stream: TextIO, text: str) -> None:
    try:
        stream.write(f"{text}\n")  # a CLI: plain text for a person
        stream.flush()
    except BrokenPipeError:
        # The reader went away (`make run | head`): keep the stack running, write nowhere.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)


def _out(text: str = "") -> None:
    _write(sys.stdout, text)


def _err(text: str) -> None:
    _write(sys.stderr, text)


def shown(path: Path) -> str:
    """A path relative to the working directory when it is under it, else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path.resolve())


def _redact(uri: str) -> str:
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", uri)


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        # Same option the servers use, so a port in TIME_WAIT does not count as taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
    return False


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").split("\0")


def _proc_stat(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name: [state, ppid, ...]."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return stat.rpartition(")")[2].split()


def _parent(pid: int) -> int:
    fields = _proc_stat(pid)
    return int(fields[1]) if len(fields) > 1 else 0


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for a parent that is not us to reap it."""
    fields = _proc_stat(pid)
    return bool(fields) and fields[0] not in ("Z", "X")


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        tail = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n".join(f"    {line}" for line in tail)


class DevStack:
    """Everything ``make run`` starts, and the order it is stopped in.

    :meth:`run` is ``make run``. Other front-ends (the demo) drive the parts themselves:
    :meth:`start`, :meth:`start_services` / :meth:`stop_service` to restart one service
    with other settings, and :meth:`stop`, which must run whatever happened.
    """

    def __init__(self, settings: DevSettings) -> None:
        self.settings = settings
        self.dir = settings.dir.resolve()
        self.logs = self.dir / "logs"
        self.outbox = self.dir / "outbox"
        self.key_file = self.dir / "dev-keys.env"
        self.services = service_table(settings)
        self.mongo: EmbeddedMongo | None = None
        self.mongo_uri = settings.mongodb_uri
        self.smtp: _Child | None = None
        self.running: list[tuple[ServiceSpec, _Child]] = []
        self.keys: dict[str, str] = {}
        self.stop_signal: str | None = None

    # Signals: the first one asks for a clean stop; a second one stops waiting.
    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stop_signal is not None:
            raise KeyboardInterrupt
        self.stop_signal = signal.Signals(signum).name

    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        code = 1
        try:
            try:
                code = self._start_and_watch()
            except StackError as err:
                _err(f"devstack: {err}")
                code = 1
            if self.stop_signal:
                _out(f"\n{self.stop_signal}: stopping ...")
            self._stop_all(graceful=True)
        except KeyboardInterrupt:
            _err("devstack: second interrupt, killing what is left")
            code = 1
        finally:
            # Whatever happened above, nothing started here may outlive this process.
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_IGN)
            self._stop_all(graceful=False)
        if code == 0:
            _out("stopped; nothing left running")
        return code

    # --- start-up ---------------------------------------------------------------------

    def wait(self) -> None:
        """Until interrupted (KeyboardInterrupt), failing if a child stops on its own."""
        while True:
            self._check_children()
            time.sleep(0.2)

    def _start_and_watch(self) -> int:
        try:
            self.start()
        except _StopRequested:
            return 0
        self._print_summary()
        while self.stop_signal is None:
            self._check_children()
            time.sleep(0.2)
        return 0

    def start(
        self,
        services: Collection[str] | None = None,
        *,
        env: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        """Start the database (unless ``MONGODB_URI`` is given), the SMTP sink, the dev
        account and keys, then the named services (every built one when None), each with
        its extra ``env[name]`` variables, and wait until they report SERVING. Raises
        :class:`StackError`; call :meth:`stop` afterwards in any case."""
        for folder in (self.dir, self.logs, self.outbox):
            folder.mkdir(parents=True, exist_ok=True)
        built = [spec for spec in self.services if spec.built()]
        if services is not None:
            for name in services:
                self._spec(name)  # an unknown or unbuilt name fails before anything starts
        self._preflight(built)
        self._checkpoint()
        self._start_database()
        self._start_smtp()
        self._checkpoint()
        try:
            self.keys = asyncio.run(
                ensure_dev_keys(self.mongo_uri, self.settings.auth_db_name, self.key_file)
            )
        except PyMongoError as err:
            detail = str(err).split(" (configured timeouts")[0].splitlines()[0]
            raise StackError(
                f"could not set up the dev account in {_redact(self.mongo_uri)}: {detail}"
            ) from err
        self._checkpoint()
        self.start_services([spec.name for spec in built] if services is None else services,
                            env=env)

    def start_services(
        self, names: Iterable[str], *, env: Mapping[str, Mapping[str, str]] | None = None
    ) -> None:
        """Start these services (after :meth:`start`), with extra ``env[name]`` variables,
        and wait until each reports SERVING."""
        specs = [self._spec(name) for name in names]
        # All of them are started before the first health check opens a gRPC channel, so
        # ``make run`` never forks while gRPC's threads are running.
        started = []
        for spec in specs:
            child = self._start_service(spec, (env or {}).get(spec.name, {}))
            self.running.append((spec, child))
            started.append((spec, child))
        for spec, child in started:
            self._wait_serving(spec, child)

    def stop_service(self, name: str) -> None:
        """Stop one running service gracefully (SIGTERM, then SIGKILL after the timeout)."""
        children = [child for spec, child in self.running if spec.name == name]
        self.running = [(spec, child) for spec, child in self.running if spec.name != name]
        self._stop_children(children, graceful=True)

    def stop(self) -> None:
        """Stop everything this stack started, gracefully, and kill whatever is left.
        Idempotent."""
        try:
            self._stop_all(graceful=True)
        finally:
            self._stop_all(graceful=False)

    def _spec(self, name: str) -> ServiceSpec:
        for spec in self.services:
            if spec.name == name:
                if not spec.built():
                    raise StackError(f"{name} is not built yet")
                return spec
        raise StackError(f"no service named {name!r}")

    def _checkpoint(self) -> None:
        if self.stop_signal is not None:
            raise _StopRequested

    def _preflight(self, built: Iterable[ServiceSpec]) -> None:
        """Refuse early, with the variable to change, if a port is taken."""
        s = self.settings
        if not self.mongo_uri:
            self._stop_stale_database()
        wanted: list[tuple[int, str, str]] = []
        if not self.mongo_uri:
            wanted.append((s.mongo_port, "embedded database", "GOALFLOW_DEV_MONGO_PORT"))
        wanted.append((s.smtp_port, "SMTP sink", "GOALFLOW_DEV_SMTP_PORT"))
        for spec in built:
            var = f"GOALFLOW_DEV_{spec.name.upper()}_PORT"
            wanted.append((spec.grpc_port, f"{spec.name} gRPC", var))
            if spec.http_port is not None:
                http_var = var.replace("_PORT", "_HTTP_PORT")
                wanted.append((spec.http_port, f"{spec.name} HTTP", http_var))
        seen: dict[int, str] = {}
        for port, what, var in wanted:
            if port in seen:
                raise StackError(f"{what} and {seen[port]} are both set to port {port}")
            seen[port] = what
            if _port_in_use(port):
                hint = " Is an earlier `make run` still running?"
                if what == "embedded database":
                    hint += self._stale_db_hint()
                raise StackError(
                    f"port {port} ({what}) is already in use.{hint} "
                    f"Or pick another port with {var}."
                )

    def _stale_db_hint(self) -> str:
        pid = _read_pid(self.dir / "mongo" / "nx-27017.pid")
        if pid is None or not _running(pid):
            return ""
        return f" (nx-27017 pid {pid}, data in {shown(self.dir / 'mongo')})"

    def _stop_stale_database(self) -> None:
        """Stop the embedded database an earlier run left behind when it was killed outright
        (SIGKILL gives it no chance to clean up), so the next ``make run`` just works.

        Only a process that is provably that one is touched: nx-27017 with this data folder,
        whose parent is no longer a dev stack. One that a running dev stack owns is left
        alone, and the port check then says the port is taken.
        """
        pid = _read_pid(self.dir / "mongo" / "nx-27017.pid")
        if pid is None or not _running(pid):
            return
        args = _cmdline(pid)
        data_dir = str(self.dir / "mongo")
        owned = any(
            a == "--data-dir" and b == data_dir for a, b in itertools.pairwise(args)
        )
        if not owned or not any("nx_27017" in arg for arg in args):
            return
        if "goalflow_dev.devstack" in _cmdline(_parent(pid)):
            return
        _out(f"stopping the embedded database an earlier run left behind (pid {pid})")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.stop_timeout_s
        while _running(pid):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)

    def _start_database(self) -> None:
        if self.mongo_uri:
            return
        self.mongo = EmbeddedMongo(self.dir / "mongo", port=self.settings.mongo_port, host=HOST)
        try:
            self.mongo.start(timeout_s=self.settings.start_timeout_s)
        except (OSError, RuntimeError) as err:  # port taken, exited, or TimeoutError
            self.mongo = None
            raise StackError(f"embedded database did not start: {err}") from err
        self.mongo_uri = self.mongo.uri

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> _Child:
        log_path = self.logs / f"{name}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                # If the dev stack itself is killed outright (SIGKILL), the kernel sends
                # the child SIGTERM, so nothing is left running.
                dying_with_this_process([sys.executable, *args]),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                # Own session: a terminal's Ctrl-C reaches only us, and we stop the
                # children in order (services before the sink and the database).
                start_new_session=True,
                # No preexec_fn: Python run between fork and exec crashed restarts made
                # while gRPC's threads run (SIGSEGV in 1-2 of 10); see parent_death.
            )
        return _Child(name, proc, log_path)

    def _start_smtp(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.smtp = self._spawn(
            "smtp",
            [
                "-m", "goalflow_dev.smtp_sink",
                "--host", HOST,
                "--port", str(self.settings.smtp_port),
                "--outbox", str(self.outbox),
            ],
            env,
        )
        deadline = time.monotonic() + self.settings.start_timeout_s
        while True:
            self._checkpoint()
            self._check_alive(self.smtp)
            with contextlib.suppress(OSError), socket.create_connection(
                (HOST, self.settings.smtp_port), timeout=0.5
            ):
                return
            if time.monotonic() > deadline:
                raise StackError(f"SMTP sink did not listen; see {shown(self.smtp.log_path)}")
            time.sleep(0.05)

    def _start_service(self, spec: ServiceSpec, extra_env: Mapping[str, str]) -> _Child:
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "MONGODB_URI": self.mongo_uri,
            "GOALFLOW_AUTH_DB_NAME": self.settings.auth_db_name,
            "GOALFLOW_SERVICE_API_KEY": self.keys["GOALFLOW_SERVICE_API_KEY"],
            "GOALFLOW_GRPC_HOST": HOST,
            "GOALFLOW_GRPC_PORT": str(spec.grpc_port),
            **spec.env,
            **extra_env,
        }
        # Nobody has RPCs in flight worth 10 s during development; Ctrl-C should be quick.
        env.setdefault("GOALFLOW_SHUTDOWN_GRACE_S", "2")
        env.setdefault("GOALFLOW_TOKEN_KEYS", dev_token_keys(self.dir))  # tokens enabled
        return self._spawn(spec.name, ["-m", spec.package], env)

    def _wait_serving(self, spec: ServiceSpec, child: _Child) -> None:
        """Poll the standard health service until the service reports SERVING."""
        deadline = time.monotonic() + self.settings.start_timeout_s
        request = health_pb2.HealthCheckRequest(service=spec.health_name)
        with grpc.insecure_channel(spec.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                self._checkpoint()
                self._check_children()
                with contextlib.suppress(grpc.RpcError):
                    reply = stub.Check(request, timeout=1.0)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                if time.monotonic() > deadline:
                    raise StackError(
                        f"{spec.name} did not report SERVING on {spec.address} within "
                        f"{self.settings.start_timeout_s:.0f}s; see {shown(child.log_path)}"
                    )
                time.sleep(0.2)

    # --- watching ---------------------------------------------------------------------

    def _check_alive(self, child: _Child) -> None:
        code = child.proc.poll()
        if code is None:
            return
        tail = _log_tail(child.log_path)
        raise StackError(
            f"{child.name} exited unexpectedly (exit code {code}); "
            f"its log is {shown(child.log_path)}" + (f", ending with:\n{tail}" if tail else "")
        )

    def _check_children(self) -> None:
        if self.mongo is not None and not self.mongo.running:
            log = self.mongo.data_dir / "nx-27017.log"
            raise StackError(
                f"the embedded database exited unexpectedly; its log is {shown(log)}"
            )
        if self.smtp is not None:
            self._check_alive(self.smtp)
        for _, child in self.running:
            self._check_alive(child)

    # --- stopping ---------------------------------------------------------------------

    def _stop_all(self, *, graceful: bool) -> None:
        """Services first (they may still write to the database or send mail), then the
        SMTP sink, then the database. Idempotent."""
        services = [child for _, child in reversed(self.running)]
        self._stop_children(services, graceful=graceful)
        self.running = []
        if self.smtp is not None:
            self._stop_children([self.smtp], graceful=graceful)
            self.smtp = None
        if self.mongo is not None:
            if graceful:
                self.mongo.stop(self.settings.stop_timeout_s)
            else:
                self.mongo.kill()
            self.mongo = None

    def _stop_children(self, children: list[_Child], *, graceful: bool) -> None:
        for child in children:
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
        deadline = time.monotonic() + (self.settings.stop_timeout_s if graceful else 5.0)
        for child in children:
            try:
                child.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _err(f"devstack: {child.name} ignored SIGTERM; killing it")
                # Still running, so its process group still exists: take it all down.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.proc.pid, signal.SIGKILL)
                child.proc.wait()

    # --- output -----------------------------------------------------------------------

    def _print_summary(self) -> None:
        rows: list[tuple[str, str, str]] = []
        if self.mongo is not None:
            rows.append(
                ("database", self.mongo_uri,
                 f"embedded nx-27017, data in {shown(self.mongo.data_dir)}")
            )
        else:
            rows.append(
                ("database", _redact(self.mongo_uri), "from MONGODB_URI (not started here)")
            )
        rows.append(
            ("smtp sink", f"{HOST}:{self.settings.smtp_port}",
             f"mail lands in {shown(self.outbox)}/")
        )
        started = {spec.name: child for spec, child in self.running}
        for spec in self.services:
            child = started.get(spec.name)
            if child is None:
                rows.append((spec.name, "not built yet", ""))
                continue
            where = f"http://{spec.address}" if spec.web else spec.address
            if spec.http_port is not None:
                where += f"  http://{HOST}:{spec.http_port}"
            rows.append((spec.name, where, f"log {shown(child.log_path)}"))
        width = max(len(where) for _, where, _ in rows)
        _out("goalflow dev stack")
        for name, where, note in rows:
            _out(f"  {name:<10} {where:<{width}}  {note}".rstrip())
        keys_at = shown(self.key_file)
        _out(f"\ndev account {DEV_ACCOUNT!r} (UTC); keys saved in {keys_at}:")
        for var, key in self.keys.items():
            _out(f"  {var}={key}  {KEY_NOTES.get(var, '')}".rstrip())
        edge = started.get("edge")
        if edge is not None:
            spec = self._spec("edge")
            if "GOALFLOW_CONSOLE_DIR" in spec.env:
                _out(f"\nweb console: {console_url(spec)}  (sign in with "
                     "GOALFLOW_ADMIN_KEY, or an agent key and its agent id)")
            else:
                _out(f"\nno web console: {shown(CONSOLE_DIR)} is not built (`make web`)")
        if "config" in started:
            # The README's first lines: `goalflow` is in the virtualenv, the keys in the file.
            activate = shown(Path(sys.prefix) / "bin" / "activate")
            _out(f"\ntry, in another shell:  . {activate}; set -a; . {keys_at}; set +a\n"
                 "    GOALFLOW_KEY=$GOALFLOW_ADMIN_KEY goalflow goals list")
        _out(f"\nready: logs in {shown(self.logs)}/; Ctrl-C stops everything")


def main() -> None:
    sys.exit(DevStack(DevSettings()).run())


if __name__ == "__main__":
    main()
