"""docker-compose.yml and the Dockerfile, checked against the code (no Docker engine runs on
these machines, so nothing here builds or starts a container).

The settings each container is given are compared with what its settings class reads:
env names come from the pydantic-settings fields (prefix, aliases), the class from the
console script the container runs, ports and peer addresses from the values the services
end up with. The health probe the containers use is run for real against a live server.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import importlib.util
import ipaddress
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from pydantic import AliasChoices, AliasPath, SecretStr, TypeAdapter, ValidationError
from pymongo.uri_parser import parse_uri

from config_svc.server import create_server
from goalflow_common.auth import KEY_RE
from goalflow_common.settings import ServiceSettings

ROOT = Path(__file__).resolve().parent.parent
REQUIRED_SERVICES = ("mongo", "mailpit", "config", "tracker", "export")
# Fields a server listens on; every other *_port is a destination (e.g. smtp_port).
LISTENER_FIELDS = ("grpc_port", "http_port")
# A variable named like this holds a credential and must come from the environment.
SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN_KEYS|_TOKEN$|API_KEY|PRIVATE_KEY", re.IGNORECASE)
REQUIRED_FROM_ENV = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*:?\?[^}]+\}$")
INTERPOLATION = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
)
LOOPBACK_NAMES = {"localhost", "ip6-localhost"}
# Services that never open the database (checked by test_database_free_services_import_none),
# and the shared settings they therefore never use: the edge forwards each caller's credential.
DATABASE_FREE = frozenset({"edge"})
UNUSED_WITHOUT_DATABASE = frozenset({
    "mongodb_uri", "auth_db_name", "key_cache_ttl_s", "mongo_connect_attempts",
    "service_api_key",
})
# Pins of the production image (`make lock`): the runtime, and the code generator of its build.
RUNTIME_LOCK = ROOT / "requirements" / "runtime.txt"
PROTOS_LOCK = ROOT / "requirements" / "protos.txt"
# Never in the production image, whatever the extras say: people's and developers' tools.
DEV_ONLY = frozenset({
    "nx-27017", "aiosmtpd", "click", "rich", "pyyaml", "pytest", "pytest-asyncio",
    "pytest-timeout", "hypothesis", "ruff", "mypy", "trustme", "grpcio-tools", "pip-tools",
})
# The distributions beside the image's: people's and developers' tools (`make` installs them).
TOOL_DISTRIBUTIONS = (ROOT / "libs" / "client", ROOT / "libs" / "devtools")
# The top-level packages of the image's distribution: the runtime library and the services.
IMAGE_PACKAGES = frozenset({"goalflow_common", "config_svc", "tracker_svc", "export_svc",
                            "edge_svc"})
# Top-level modules of DEV_ONLY packages and of the packages built on them.
DEV_ONLY_MODULES = (
    "nx_27017", "aiosmtpd", "click", "rich", "yaml", "pytest", "hypothesis", "trustme",
    "grpc_tools", "goalflow_client", "goalflow_dev",
)
# Mailpit's web inbox port when MP_UI_BIND_ADDR is not set (Mailpit's documented default).
MAILPIT_UI_PORT = 8025
# The compose variable naming the host address each kind of published port is bound to; each
# defaults to loopback. gRPC for clients and producers, downloads for recipients, the Mailpit
# inbox (every download link) for the operator.
PUBLISH_HOST = {
    "grpc_port": "GOALFLOW_GRPC_PUBLISH_HOST",
    "http_port": "GOALFLOW_DOWNLOAD_PUBLISH_HOST",
    "mailpit_ui": "GOALFLOW_MAILPIT_PUBLISH_HOST",
}
# The edge's http_port is for browsers, not download recipients: its own variable.
PUBLISH_HOST_OF = {("edge", "http_port"): "GOALFLOW_EDGE_PUBLISH_HOST"}


# --- reading the files ------------------------------------------------------------------


@functools.cache
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


@functools.cache
def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


@functools.cache
def dockerfile_stages() -> tuple[tuple[Instruction, ...], ...]:
    """The Dockerfile's build stages, each a list of instructions (continuations joined)."""
    text = re.sub(r"\\\n", "", (ROOT / "Dockerfile").read_text())
    stages: list[list[Instruction]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        assert stages, "Dockerfile: an instruction comes before the first FROM"
        stages[-1].append(Instruction(keyword.upper(), args.strip()))
    return tuple(tuple(stage) for stage in stages)


def dockerfile_stage(name: str) -> tuple[Instruction, ...]:
    """The stage ``FROM ... AS name``."""
    for stage in dockerfile_stages():
        words = stage[0].args.split()
        if len(words) == 3 and words[1].upper() == "AS" and words[2] == name:
            return stage
    raise AssertionError(f"Dockerfile: no stage named {name}")


def copies(stage: tuple[Instruction, ...]) -> list[tuple[list[str], str, str | None]]:
    """Each COPY of ``stage``: its sources, its destination, and the stage it copies from
    (``--from``; None: the build context)."""
    result: list[tuple[list[str], str, str | None]] = []
    for ins in stage:
        if ins.keyword != "COPY":
            continue
        words = shlex.split(ins.args)
        options = [w for w in words if w.startswith("--")]
        paths = [w for w in words if not w.startswith("--")]
        source_stage = next((o.split("=", 1)[1] for o in options if o.startswith("--from=")),
                            None)
        result.append((paths[:-1], paths[-1], source_stage))
    return result


def image_env() -> dict[str, str]:
    """ENV of the final stage (the image every goalflow service runs)."""
    env: dict[str, str] = {}
    for ins in dockerfile_stages()[-1]:
        if ins.keyword != "ENV":
            continue
        tokens = shlex.split(ins.args)
        if "=" in tokens[0]:
            env.update(token.split("=", 1) for token in tokens)
        else:
            env[tokens[0]] = " ".join(tokens[1:])
    return env


# What an operator sets for variables whose values have a shape the settings check.
SHAPED_PLACEHOLDERS = {"GOALFLOW_TOKEN_KEYS": "k1:" + "0" * 64}


def default_of(value: Any) -> str:
    """A compose value as it is when the operator sets nothing: ``${X:-d}`` gives ``d``; a
    variable the operator must set (``${X:?...}``) gives a placeholder."""
    def sub(match: re.Match[str]) -> str:
        op = match.group("op") or ""
        if "?" in op or not op:
            name = match.group("name")
            return SHAPED_PLACEHOLDERS.get(name, f"<{name} from the environment>")
        return match.group("arg")

    return INTERPOLATION.sub(sub, str(value))


def environment(service: str) -> dict[str, str]:
    env = services()[service].get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def goalflow_services() -> list[str]:
    """The compose services built from this repository."""
    return sorted(name for name, spec in services().items() if "build" in spec)


# --- the code a container runs ----------------------------------------------------------


def entry_point(service: str) -> str:
    """``module:function`` of the console script the service runs."""
    command = services()[service].get("command")
    assert isinstance(command, list) and command, (
        f"{service}: `command` must name the console script to run, as a list"
    )
    scripts = pyproject()["project"]["scripts"]
    assert command[0] in scripts, (
        f"{service}: command {command[0]!r} is not a console script of pyproject.toml "
        f"[project.scripts] ({', '.join(sorted(scripts))})"
    )
    return scripts[command[0]]


def settings_class(service: str) -> type[ServiceSettings]:
    """The settings class of the package whose console script the service runs."""
    package = entry_point(service).split(":")[0].split(".")[0]
    module = importlib.import_module(f"{package}.settings")
    found = [
        obj for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, ServiceSettings)
        and obj.__module__ == module.__name__
    ]
    assert len(found) == 1, f"{service}: expected one settings class in {module.__name__}"
    return found[0]


def env_names(cls: type[ServiceSettings]) -> dict[str, str]:
    """Environment variable -> field, as pydantic-settings reads them: a field's validation
    alias(es) when it has any, else env_prefix + the field name."""
    prefix = cls.model_config.get("env_prefix", "")
    case_sensitive = cls.model_config.get("case_sensitive", False)
    names: dict[str, str] = {}
    for field_name, field in cls.model_fields.items():
        alias = field.validation_alias or field.alias
        if alias is None:
            candidates = [prefix + field_name]
        elif isinstance(alias, str):
            candidates = [alias]
        elif isinstance(alias, AliasChoices):
            candidates = [c for c in alias.choices if isinstance(c, str)] + [
                c.path[0] for c in alias.choices
                if isinstance(c, AliasPath) and isinstance(c.path[0], str)
            ]
        else:  # AliasPath: the first element names the variable
            candidates = [alias.path[0]] if isinstance(alias.path[0], str) else []
        for name in candidates:
            names[name if case_sensitive else name.upper()] = field_name
    return names


def given_env(service: str) -> dict[str, str]:
    """What the service's settings see: the image's GOALFLOW_ variables, then compose's."""
    prefix = ServiceSettings.model_config["env_prefix"]
    inherited = {k: v for k, v in image_env().items() if k.startswith(prefix)}
    return {**inherited, **environment(service)}


def setting(service: str, field_name: str) -> Any:
    """The value a field takes in the container (compose value with defaults, or the
    field's default), validated as pydantic would."""
    cls = settings_class(service)
    field = cls.model_fields[field_name]
    by_field = {f: env for env, f in env_names(cls).items()}
    env = given_env(service)
    if by_field[field_name] in env:
        return TypeAdapter(field.annotation).validate_python(
            default_of(env[by_field[field_name]])
        )
    return field.get_default(call_default_factory=True)


def listeners(service: str) -> dict[str, int]:
    """Env name -> port of every server the service runs."""
    cls = settings_class(service)
    by_field = {f: env for env, f in env_names(cls).items()}
    return {by_field[f]: setting(service, f) for f in LISTENER_FIELDS if f in cls.model_fields}


def host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def listening_ports(service: str) -> set[int]:
    """Ports a compose service listens on inside its container."""
    if service in goalflow_services():
        return set(listeners(service).values())
    command = services()[service].get("command") or []
    if "--replSet" in command:
        return {int(command[command.index("--port") + 1]) if "--port" in command else 27017}
    env = environment(service)
    if service == "mailpit":
        smtp = host_port(env.get("MP_SMTP_BIND_ADDR", ":1025"))[1]
        ui = host_port(env["MP_UI_BIND_ADDR"])[1] if "MP_UI_BIND_ADDR" in env else MAILPIT_UI_PORT
        return {smtp, ui}
    return set()


def published(service: str) -> list[tuple[int | None, int]]:
    """(host port, container port) of each published port, short or long syntax."""
    out: list[tuple[int | None, int]] = []
    for entry in services()[service].get("ports") or []:
        if isinstance(entry, dict):
            host = entry.get("published")
            out.append((int(default_of(host)) if host is not None else None,
                        int(entry["target"])))
            continue
        parts = default_of(entry).split("/")[0].split(":")
        out.append((int(parts[-2]) if len(parts) > 1 else None, int(parts[-1])))
    return out


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def mentions_loopback(value: Any) -> bool:
    """Whether a default value points at this machine (URL, address or host)."""
    if not isinstance(value, str) or not value:
        return False
    hosts = re.findall(r"(?:^|//|,)\[?([A-Za-z0-9.:-]+?)\]?(?::\d+)?(?=$|[/?,])", value)
    return any(is_loopback(h) for h in hosts)


def depends_on(service: str) -> dict[str, dict[str, Any]]:
    deps = services()[service].get("depends_on") or {}
    assert isinstance(deps, dict), (
        f"{service}: depends_on must use the long form with a condition, not a list"
    )
    return deps


GOALFLOW = goalflow_services()


# --- the compose file -------------------------------------------------------------------


def test_every_service_is_present_and_the_goalflow_ones_are_built_here():
    missing = [name for name in REQUIRED_SERVICES if name not in services()]
    assert not missing, f"docker-compose.yml: services missing: {missing}"
    assert GOALFLOW == ["config", "edge", "export", "tracker"], (
        f"the services built from this repository should be config, tracker, export and "
        f"edge, not {GOALFLOW}"
    )
    for name in GOALFLOW:
        build = services()[name]["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get(
            "dockerfile", "Dockerfile"
        )
        assert (ROOT / context / dockerfile).is_file(), f"{name}: no {dockerfile} in {context}"


@pytest.mark.parametrize("service", GOALFLOW)
def test_command_is_a_console_script_that_exists(service):
    module_name, _, function = entry_point(service).partition(":")
    module = importlib.import_module(module_name)
    assert callable(getattr(module, function, None)), (
        f"{service}: entry point {entry_point(service)} is not a function"
    )
    others = [s for s in GOALFLOW if s != service and entry_point(s) == entry_point(service)]
    assert not others, f"{service} runs the same entry point as {others}"


@pytest.mark.parametrize("service", GOALFLOW)
def test_every_variable_given_is_one_the_settings_read(service):
    cls = settings_class(service)
    known = env_names(cls)
    for name in given_env(service):
        assert name.upper() in known, (
            f"{service}: {name} is not read by {cls.__name__} (it reads: "
            f"{', '.join(sorted(known))})"
        )


@pytest.mark.parametrize("service", GOALFLOW)
def test_settings_load_the_values_given(service, monkeypatch):
    """pydantic-settings itself reads the container's environment into the fields."""
    cls = settings_class(service)
    known = env_names(cls)
    for name in list(known):
        monkeypatch.delenv(name, raising=False)
    # Variables the class does not read are reported by the test above.
    env = {
        name: default_of(value) for name, value in given_env(service).items()
        if name.upper() in known
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        loaded = cls()
    except ValidationError as err:
        pytest.fail(f"{service}: {cls.__name__} refuses the values compose gives it: {err}")
    for name, value in env.items():
        field = cls.model_fields[known[name.upper()]]
        expected = TypeAdapter(field.annotation).validate_python(value)
        assert getattr(loaded, known[name.upper()]) == expected, (
            f"{service}: {name}={value!r} did not reach {cls.__name__}.{known[name.upper()]}"
        )


@pytest.mark.parametrize("service", GOALFLOW)
def test_values_a_container_cannot_default_are_set(service):
    """Fields without a default, credentials, and defaults that point at the container's
    own loopback (the database, peers, SMTP, bind address, link base) must all be given."""
    cls = settings_class(service)
    given = {name.upper() for name in given_env(service)}
    for env, field_name in env_names(cls).items():
        if service in DATABASE_FREE and field_name in UNUSED_WITHOUT_DATABASE:
            continue
        field = cls.model_fields[field_name]
        default = None if field.is_required() else field.get_default(call_default_factory=True)
        if field.is_required():
            why = "it has no default"
        elif field.annotation is SecretStr or SECRET_NAME.search(env):
            why = "it is a credential"
        elif mentions_loopback(default):
            why = f"its default {default!r} is the container itself"
        else:
            continue
        assert env in given, f"{service}: {env} must be set ({why})"


@pytest.mark.parametrize("service", REQUIRED_SERVICES)
def test_secrets_come_from_the_environment(service):
    text = yaml.safe_dump(services()[service])
    assert not re.search(KEY_RE.pattern.strip("^$"), text), (
        f"{service}: a literal goalflow API key is in docker-compose.yml"
    )
    fields = {}
    if service in GOALFLOW:
        cls = settings_class(service)
        fields = {env: cls.model_fields[f] for env, f in env_names(cls).items()}
    for name, value in environment(service).items():
        field = fields.get(name.upper())
        secret = SECRET_NAME.search(name) or (field is not None and field.annotation is SecretStr)
        if secret:
            assert REQUIRED_FROM_ENV.match(value), (
                f"{service}: {name} must come from the environment as "
                f"'${{{name}:?message}}', not {value!r}"
            )
        if name.upper() == "MONGODB_URI":
            assert "@" not in default_of(value), (
                f"{service}: MONGODB_URI carries credentials; take them from the environment"
            )


def test_the_image_holds_no_secrets():
    for name, value in image_env().items():
        assert not SECRET_NAME.search(name), f"Dockerfile: ENV {name} is a credential"
        assert not re.search(KEY_RE.pattern.strip("^$"), value), f"Dockerfile: ENV {name}"


@pytest.mark.parametrize("service", GOALFLOW)
def test_published_ports_are_the_ports_the_service_listens_on(service):
    ports = listeners(service)
    targets = {target for _, target in published(service)}
    for env, port in ports.items():
        assert port in targets, f"{service}: {env}={port} is not published"
    stray = targets - set(ports.values())
    assert not stray, (
        f"{service}: publishes {sorted(stray)}, which no setting listens on "
        f"({', '.join(f'{k}={v}' for k, v in ports.items())})"
    )


def test_mailpit_publishes_its_inbox_and_the_database_stays_internal():
    assert {"mailpit", "mongo"} <= set(services()), "docker-compose.yml: mailpit or mongo missing"
    assert MAILPIT_UI_PORT in {target for _, target in published("mailpit")}, (
        "mailpit: the web inbox port is not published"
    )
    assert not services()["mongo"].get("ports"), (
        "mongo: the database must not be published (it has no authentication here)"
    )


def publish_hosts() -> dict[tuple[str, int], str]:
    """(service, container port) -> the variable binding it, for everything that should be
    published: each goalflow listener and the Mailpit inbox."""
    wanted = {
        (service, setting(service, field)): PUBLISH_HOST_OF.get((service, field),
                                                               PUBLISH_HOST[field])
        for service in GOALFLOW for field in LISTENER_FIELDS
        if field in settings_class(service).model_fields
    }
    env = environment("mailpit")
    ui = host_port(env["MP_UI_BIND_ADDR"])[1] if "MP_UI_BIND_ADDR" in env else MAILPIT_UI_PORT
    wanted["mailpit", ui] = PUBLISH_HOST["mailpit_ui"]
    return wanted


def bind_host(entry: str | dict[str, Any]) -> str | None:
    """The host address part of a ``ports`` entry, as written (None: every interface)."""
    if isinstance(entry, dict):
        return entry.get("host_ip")
    # HOST:PUBLISHED:TARGET; HOST may hold ${...:-...}, so split from the right.
    parts = str(entry).split("/")[0].rsplit(":", 2)
    return parts[0] if len(parts) == 3 else None


def test_only_what_users_need_is_published():
    """gRPC and downloads for clients, the edge for browsers, the inbox for the operator;
    never the database or SMTP."""
    got = {(service, target) for service in services() for _, target in published(service)}
    wanted = set(publish_hosts())
    assert got - wanted == set(), f"published, but nobody outside needs it: {got - wanted}"
    assert wanted - got == set(), f"not published: {wanted - got}"


@pytest.mark.parametrize("service", REQUIRED_SERVICES)
def test_published_ports_are_bound_to_loopback_unless_a_setting_says_otherwise(service):
    wanted = publish_hosts()
    for entry in services()[service].get("ports") or []:
        target = int(entry["target"]) if isinstance(entry, dict) else (
            int(str(entry).split("/")[0].rsplit(":", 1)[1])
        )
        var = wanted.get((service, target))
        if var is None:
            continue  # reported by the test above
        host = bind_host(entry)
        match = INTERPOLATION.fullmatch(host or "")
        assert match and match.group("name") == var and match.group("op") == ":-", (
            f"{service}: port {target} must be bound to '${{{var}:-127.0.0.1}}', "
            f"not {'every interface' if host is None else repr(host)}"
        )
        assert is_loopback(match.group("arg")), (
            f"{service}: {var} must default to loopback, not {match.group('arg')!r}"
        )


def test_public_base_url_default_matches_the_published_download_port():
    env = environment("export")
    assert "GOALFLOW_PUBLIC_BASE_URL" in env, "export: GOALFLOW_PUBLIC_BASE_URL is not set"
    raw = env["GOALFLOW_PUBLIC_BASE_URL"]
    assert INTERPOLATION.fullmatch(raw) and INTERPOLATION.fullmatch(raw).group("op") == ":-", (
        f"export: GOALFLOW_PUBLIC_BASE_URL should come from the environment with a default "
        f"('${{GOALFLOW_PUBLIC_BASE_URL:-http://...}}'), not {raw!r}"
    )
    url_port = int(re.search(r":(\d+)(?:/|$)", default_of(raw)).group(1))
    http_port = listeners("export")["GOALFLOW_HTTP_PORT"]
    hosts = [host for host, target in published("export") if target == http_port]
    assert url_port in hosts, (
        f"export: GOALFLOW_PUBLIC_BASE_URL's default port {url_port} is not where "
        f"GOALFLOW_HTTP_PORT={http_port} is published ({hosts})"
    )


@pytest.mark.parametrize("service", GOALFLOW)
def test_peers_are_reached_by_service_name_on_their_ports(service):
    cls = settings_class(service)
    by_field = {f: env for env, f in env_names(cls).items()}
    env = given_env(service)
    peers: list[tuple[str, str, int]] = []
    for field_name, var in by_field.items():
        if field_name.endswith("_address") and var in env:
            host, port = host_port(default_of(env[var]))
            peers.append((var, host, port))
        if field_name.endswith("_host") and field_name != "grpc_host" and var in env:
            port_field = field_name.removesuffix("_host") + "_port"
            peers.append((var, default_of(env[var]), setting(service, port_field)))
    for var, host, port in peers:
        assert host in services(), f"{service}: {var} names {host!r}, not a compose service"
        assert port in listening_ports(host), (
            f"{service}: {var} reaches {host} on {port}; it listens on "
            f"{sorted(listening_ports(host))}"
        )


def test_database_free_services_import_none():
    """The services said to hold no database never load the module that opens one."""
    packages = [entry_point(s).split(":")[0].split(".")[0] for s in sorted(DATABASE_FREE)]
    probe = subprocess.run(
        [sys.executable, "-c", "import importlib, sys\n"
         f"for p in {packages!r}: importlib.import_module(p + '.server')\n"
         "print(sorted(m for m in sys.modules if m == 'goalflow_common.db'))"],
        capture_output=True, text=True, timeout=60, check=False)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "[]", probe.stdout


def _replica_set() -> tuple[str, str, str]:
    """(service, --replSet name, the member host the healthcheck initiates)."""
    for name, spec in services().items():
        command = spec.get("command") or []
        if "--replSet" in command:
            script = " ".join(spec["healthcheck"]["test"])
            rs_id = re.search(r"rs\.initiate\(\{\s*_id:\s*'([^']+)'", script)
            member = re.search(r"host:\s*'([^']+)'", script)
            assert rs_id and member, f"{name}: the healthcheck must initiate the replica set"
            assert rs_id.group(1) == command[command.index("--replSet") + 1], (
                f"{name}: the healthcheck initiates {rs_id.group(1)!r}, not the --replSet name"
            )
            assert "primary" in script.lower(), (
                f"{name}: the healthcheck must report healthy only once the node is primary"
            )
            return name, command[command.index("--replSet") + 1], member.group(1)
    raise AssertionError("docker-compose.yml: no MongoDB service runs with --replSet")


@pytest.mark.parametrize("service", GOALFLOW)
def test_mongodb_uri_names_the_replica_set_service(service):
    if service in DATABASE_FREE:
        assert "MONGODB_URI" not in given_env(service), f"{service}: holds no database"
        return
    mongo, rs_name, member = _replica_set()
    uri = given_env(service).get("MONGODB_URI")
    assert uri, f"{service}: MONGODB_URI is not set"
    parsed = parse_uri(default_of(uri))
    assert [f"{h}:{p}" for h, p in parsed["nodelist"]] == [member], (
        f"{service}: MONGODB_URI should name {member} (the {mongo} service), not "
        f"{parsed['nodelist']}"
    )
    assert parsed["options"].get("replicaSet") == rs_name, (
        f"{service}: MONGODB_URI must carry replicaSet={rs_name}"
    )
    assert host_port(member)[0] == mongo and host_port(member)[1] in listening_ports(mongo)


@pytest.mark.parametrize("service", REQUIRED_SERVICES)
def test_every_service_has_a_healthcheck(service):
    check = services()[service].get("healthcheck") or {}
    test = check.get("test")
    assert test and not check.get("disable") and test[0] in ("CMD", "CMD-SHELL"), (
        f"{service}: needs a healthcheck (test: [CMD, ...])"
    )
    assert test[1:] and test[1:] != ["NONE"], f"{service}: the healthcheck runs nothing"


@pytest.mark.parametrize("service", GOALFLOW)
def test_goalflow_healthcheck_probes_the_grpc_port(service):
    test = services()[service]["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1] == "python" and test[2] == "-m", (
        f"{service}: the healthcheck should be [CMD, python, -m, <probe module>, HOST:PORT]"
    )
    assert importlib.util.find_spec(test[3]) is not None, (
        f"{service}: the healthcheck module {test[3]} does not exist"
    )
    host, port = host_port(test[4])
    # The edge has no gRPC port of its own: its HTTP port answers gRPC (h2c) health checks.
    var = "GOALFLOW_GRPC_PORT" if "GOALFLOW_GRPC_PORT" in listeners(service) else (
        "GOALFLOW_HTTP_PORT")
    grpc_port = listeners(service)[var]
    assert is_loopback(host) and port == grpc_port, (
        f"{service}: the healthcheck probes {test[4]}, not this container's "
        f"{var}={grpc_port}"
    )


@pytest.mark.parametrize("service", REQUIRED_SERVICES)
def test_dependencies_wait_until_healthy(service):
    for dep, spec in depends_on(service).items():
        assert dep in services(), f"{service}: depends on unknown service {dep}"
        assert (spec or {}).get("condition") == "service_healthy", (
            f"{service}: depends_on {dep} must have condition: service_healthy"
        )


@pytest.mark.parametrize("service", GOALFLOW)
def test_a_service_waits_for_what_it_calls(service):
    """The database, and every peer it calls unless that peer waits for it (a cycle)."""
    env = given_env(service)
    needed = set() if service in DATABASE_FREE else {
        host for host, _ in parse_uri(default_of(env["MONGODB_URI"]))["nodelist"]}
    cls = settings_class(service)
    for var, field_name in env_names(cls).items():
        if var in env and field_name.endswith("_address"):
            needed.add(host_port(default_of(env[var]))[0])
        elif var in env and field_name.endswith("_host") and field_name != "grpc_host":
            needed.add(default_of(env[var]))
    for peer in sorted(needed):
        if peer in services() and service in depends_on(peer):
            continue
        assert peer in depends_on(service), f"{service}: must depend_on {peer} (it calls it)"


def test_dependencies_have_no_cycle():
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        assert state.get(name) != "open", f"depends_on cycle: {' -> '.join([*path, name])}"
        state[name] = "open"
        for dep in depends_on(name):
            if dep in services():  # an unknown one is reported by the test above
                visit(dep, [*path, name])
        state[name] = "done"

    for name in services():
        visit(name, [])


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    assert parts, f"not a duration: {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


@pytest.mark.parametrize("service", GOALFLOW)
def test_stop_grace_covers_the_shutdown_grace(service):
    grace = setting(service, "shutdown_grace_s")
    stop = _seconds(str(services()[service].get("stop_grace_period", "10s")))
    assert stop > grace, (
        f"{service}: stop_grace_period {stop:g}s must exceed GOALFLOW_SHUTDOWN_GRACE_S "
        f"({grace:g}s), or Docker kills the service mid-shutdown"
    )


# --- the Dockerfile and the package it installs -----------------------------------------


def test_dockerfile_builds_a_slim_non_root_image_without_dev_dependencies():
    stages = dockerfile_stages()
    final = stages[-1]
    assert "slim" in final[0].args, f"Dockerfile: the final stage is {final[0].args}, not slim"
    users = [ins.args for ins in final if ins.keyword == "USER"]
    assert users, "Dockerfile: the final stage has no USER (it would run as root)"
    assert users[-1].split(":")[0] not in ("root", "0"), f"Dockerfile: USER {users[-1]}"
    assert not any(ins.keyword == "ENTRYPOINT" for ins in final), (
        "Dockerfile: no ENTRYPOINT, so compose's `command` is the whole command line"
    )
    text = (ROOT / "Dockerfile").read_text()
    assert "scripts/gen_protos.py" in text, "Dockerfile: protobuf code is not generated"
    assert not re.search(r"\.\[", text), "Dockerfile: installs an extra (the image is the runtime)"


# --- the web console in the image ---------------------------------------------------------


def test_the_edge_serves_the_console_the_image_holds():
    """The edge's GOALFLOW_CONSOLE_DIR is where the final stage copies the web stage's
    build, and that build is the console `make web` builds (the same script)."""
    console_dir = services()["edge"]["environment"].get("GOALFLOW_CONSOLE_DIR")
    assert console_dir, "edge: GOALFLOW_CONSOLE_DIR is unset, so no console is served"
    from_web = [(srcs, dest) for srcs, dest, origin in copies(dockerfile_stages()[-1])
                if origin == "web"]
    assert from_web, "Dockerfile: the final stage copies nothing from the web stage"
    [(sources, destination)] = from_web
    assert sources == ["/src/web/dist/console"], sources
    assert destination.rstrip("/") == console_dir.rstrip("/"), (
        f"edge: GOALFLOW_CONSOLE_DIR {console_dir} is not where the Dockerfile copies the "
        f"console ({destination})")
    web = dockerfile_stage("web")
    assert web[0].args.split()[0].startswith("node:"), web[0].args
    workdirs = [ins.args for ins in web if ins.keyword == "WORKDIR"]
    assert workdirs[-1] == "/src"
    commands = " && ".join(ins.args for ins in web if ins.keyword == "RUN")
    assert "npm ci" in commands and "npm install" not in commands  # the lock, as is
    assert "buf generate --template web/buf.gen.yaml" in commands
    assert "scripts/build_web.sh" in commands
    # make builds with the same script: one recipe for both.
    assert "scripts/build_web.sh" in (ROOT / "Makefile").read_text()
    copied = {src.rstrip("/") for srcs, _, origin in copies(web) if origin is None
              for src in srcs}
    assert {"package.json", "package-lock.json", "buf.yaml", "protos", "web"} <= copied


def test_the_console_build_leaves_no_local_output_in_the_build_context():
    """A stale web/dist or web/src/gen of the checkout must not reach the web stage (it
    builds its own), nor node_modules."""
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith(("#", "!"))]
    for path in ("web/dist/", "web/src/gen/"):
        assert path in ignored or path.rstrip("/") in ignored, path
    allowed = [line[1:] for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")]
    assert not [a for a in allowed if a.startswith("node_modules")]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package as the image installs it (not the source tree): a wheel built from a copy of
    what the Dockerfile copies for it, the generated protobuf code included. A copy, because
    setuptools reuses a build/ folder left in the checkout by an earlier layout."""
    source, folder = tmp_path_factory.mktemp("context"), tmp_path_factory.mktemp("wheel")
    shutil.copy2(ROOT / "pyproject.toml", source)
    junk = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for tree in ("libs/common", "services"):
        shutil.copytree(ROOT / tree, source / tree, ignore=junk)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(folder), str(source)],
        capture_output=True, text=True, timeout=120,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    [found] = folder.glob("*.whl")
    return found


def wheel_requirements(wheel: Path) -> list[Requirement]:
    """The wheel's Requires-Dist: what `pip install goalflow` pulls in, extras included."""
    with zipfile.ZipFile(wheel) as archive:
        [name] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = archive.read(name).decode()
    return [
        Requirement(line.split(":", 1)[1].strip())
        for line in metadata.splitlines() if line.startswith("Requires-Dist:")
    ]


def read_lock(path: Path) -> dict[str, str]:
    """Name -> version of a pip-compile output; every entry must be an exact pin."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep and version and not re.search(r"[<>=!~;\[ ]", name + version), (
            f"{path.name}: {line!r} is not an exact pin (name==version)"
        )
        pins[canonicalize_name(name)] = version
    return pins


def dev_only_names() -> set[str]:
    """DEV_ONLY, every package an extra adds, the client and devtools distributions and all
    they depend on (for people, not services)."""
    extras = pyproject()["project"]["optional-dependencies"]
    requirements = [r for reqs in extras.values() for r in reqs]
    tools = [tomllib.loads((path / "pyproject.toml").read_text())["project"]
             for path in TOOL_DISTRIBUTIONS]
    requirements += [r for tool in tools for r in tool["dependencies"]]
    named = {canonicalize_name(Requirement(r).name) for r in requirements}
    named |= {canonicalize_name(tool["name"]) for tool in tools}
    return {canonicalize_name(n) for n in DEV_ONLY} | named - {"goalflow"}


def wheel_console_scripts(wheel: Path) -> dict[str, str]:
    """Name -> object reference of the wheel's console scripts (what the image puts on PATH)."""
    with zipfile.ZipFile(wheel) as archive:
        [name] = [n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")]
        text = archive.read(name).decode()
    scripts: dict[str, str] = {}
    section = ""
    for line in (line.strip() for line in text.splitlines()):
        if line.startswith("["):
            section = line.strip("[]")
        elif line and section == "console_scripts":
            script, _, target = line.partition("=")
            scripts[script.strip()] = target.strip()
    return scripts


def test_the_image_package_is_the_runtime_library_and_the_services_only(wheel):
    """A wheel built from this checkout (what the image installs) holds every package under
    libs/common and services/, generated protobuf code included, and nothing else: no
    goalflow_client, no goalflow_dev, no other top-level module."""
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {
        name.rsplit("/", 1)[0].replace("/", ".") for name in names if name.endswith("/__init__.py")
    }
    needed = {
        ".".join(init.parent.relative_to(root).parts)
        for root in (ROOT / "libs" / "common", ROOT / "services")
        for init in root.rglob("__init__.py") if "__pycache__" not in init.parts
    }
    missing = sorted(needed - shipped)
    assert not missing, f"a wheel (the Docker image) would not contain {missing}"
    assert "goalflow_common.pb.goals.v1" in shipped, "the generated protobuf code is missing"
    tops = {name.split("/", 1)[0] for name in names if ".dist-info/" not in name}
    assert tops == IMAGE_PACKAGES, f"the image's package holds {sorted(tops - IMAGE_PACKAGES)}"


def test_the_image_has_no_goalflow_cli_script(wheel):
    """The image's console scripts are the services and the operator's goalflow-keys;
    the ``goalflow`` CLI belongs to goalflow-client (libs/client), which the image lacks."""
    assert set(wheel_console_scripts(wheel)) == {
        "goalflow-config", "goalflow-tracker", "goalflow-export", "goalflow-edge",
        "goalflow-keys",
    }
    client = tomllib.loads((ROOT / "libs" / "client" / "pyproject.toml").read_text())
    assert "goalflow" in client["project"]["scripts"]


def test_the_image_build_copies_neither_client_nor_devtools():
    """The Docker build context and the files the build copies hold the runtime only; every
    source the Dockerfile copies (in any stage) is let through by .dockerignore (an
    allow-list)."""
    build = [src.rstrip("/") for srcs, _, origin in copies(dockerfile_stage("build"))
             if origin is None for src in srcs]
    assert "libs/common" in build, f"Dockerfile: copies {build}, not libs/common"
    sources = [src.rstrip("/") for stage in dockerfile_stages()
               for srcs, _, origin in copies(stage) if origin is None for src in srcs]
    leaked = [src for src in sources if src in ("libs", "libs/client", "libs/devtools", ".")]
    assert not leaked, f"Dockerfile: copies {leaked} (client and dev tools are not the image)"
    allowed = [
        line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    assert not {"libs", "libs/client", "libs/devtools"} & set(allowed), (
        f".dockerignore lets {allowed} into the build context"
    )
    blocked = [src for src in sources if not any(
        src == entry or src.startswith(entry + "/") for entry in allowed)]
    assert not blocked, f".dockerignore keeps {blocked} out of the build context COPY needs"


def test_the_production_dependencies_hold_no_dev_only_package(wheel):
    """What a plain `pip install goalflow` (the wheel without extras) and the image's lock
    bring in: the runtime, none of the CLI's, the dev stack's or the test tools' packages."""
    dev_only = dev_only_names()
    runtime = [req for req in wheel_requirements(wheel) if not req.marker]
    assert runtime, "the wheel declares no runtime dependency"
    leaked = sorted(n for req in runtime if (n := canonicalize_name(req.name)) in dev_only)
    assert not leaked, f"runtime dependencies of pyproject.toml that are dev-only: {leaked}"
    in_lock = sorted(set(read_lock(RUNTIME_LOCK)) & dev_only)
    assert not in_lock, f"{RUNTIME_LOCK.name} pins dev-only packages: {in_lock}"


def test_the_runtime_lock_pins_every_runtime_requirement_within_its_range(wheel):
    """requirements/runtime.txt is up to date with pyproject.toml (`make lock`): each runtime
    requirement is pinned, at a version its range allows."""
    pins = read_lock(RUNTIME_LOCK)
    for req in (req for req in wheel_requirements(wheel) if not req.marker):
        name = canonicalize_name(req.name)
        assert name in pins, f"{RUNTIME_LOCK.name} does not pin {req} (run `make lock`)"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{RUNTIME_LOCK.name} pins {name}=={pins[name]}, outside {req} (run `make lock`)"
        )


def test_the_code_generator_is_pinned_at_the_runtime_grpcio_and_protobuf():
    """Generated code must match the grpcio and protobuf that ship: the build's grpcio-tools
    comes from a lock compiled against the runtime one, so the build installs the runtime's
    grpcio and protobuf. grpcio-tools itself is of the runtime grpcio's release line and not
    newer (its generated code refuses a grpcio older than the generator at import)."""
    runtime, protos = read_lock(RUNTIME_LOCK), read_lock(PROTOS_LOCK)
    assert "grpcio-tools" in protos, f"{PROTOS_LOCK.name} does not pin grpcio-tools"
    for name in set(runtime) & set(protos):
        assert protos[name] == runtime[name], (
            f"{name}: {PROTOS_LOCK.name} pins {protos[name]}, {RUNTIME_LOCK.name} {runtime[name]}"
        )
    assert {"grpcio", "protobuf"} <= set(runtime) & set(protos)
    tools, grpcio = Version(protos["grpcio-tools"]), Version(runtime["grpcio"])
    assert tools.release[:2] == grpcio.release[:2] and tools <= grpcio, (
        f"grpcio-tools {tools} does not generate code for grpcio {grpcio} (run `make lock`)"
    )


def test_the_image_installs_the_locked_runtime_and_the_package_without_its_dependencies():
    build = dockerfile_stage("build")
    installs = [
        shlex.split(command)
        for ins in build if ins.keyword == "RUN"
        for command in re.split(r"&&|;", ins.args) if re.search(r"\bpip install\b", command)
    ]
    files = {
        args[i + 1] for args in installs for i, arg in enumerate(args[:-1])
        if arg in ("-r", "--requirement", "-c", "--constraint")
    }
    lock, generator = (str(path.relative_to(ROOT)) for path in (RUNTIME_LOCK, PROTOS_LOCK))
    assert lock in files and generator in files, (
        f"Dockerfile: pip must install from {lock} and {generator}, not {sorted(files)}"
    )
    package = [args for args in installs if "." in args]
    assert package and all("--no-deps" in args for args in package), (
        "Dockerfile: the package itself goes in with --no-deps (its dependencies are the lock)"
    )
    stray = [
        arg for args in installs for i, arg in enumerate(args)
        if i > 1 and not arg.startswith("-") and arg != "." and args[i - 1] not in (
            "-r", "--requirement", "-c", "--constraint")
    ]
    assert not stray, f"Dockerfile: installs packages the lock does not pin: {stray}"


def test_the_image_package_and_every_console_script_import_without_dev_tools(
    wheel, tmp_path
):
    """What the image installs, and only that: the wheel unpacked first on sys.path, every
    module of it and every console script it declares imports in a subprocess where importing
    any client or dev-only package fails, as in the image, and each comes from the wheel."""
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path)
    script = f"""
import importlib, importlib.metadata, pkgutil, sys
from pathlib import Path

BLOCKED = {DEV_ONLY_MODULES!r}
WHEEL = Path(sys.argv[1])

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{{name}} is not in the production image", name=name)

sys.meta_path.insert(0, Blocked())
for top in {sorted(IMAGE_PACKAGES)!r}:
    package = importlib.import_module(top)
    for info in pkgutil.walk_packages(package.__path__, top + "."):
        module = importlib.import_module(info.name)
        assert WHEEL in Path(module.__file__).parents, f"{{info.name}} from {{module.__file__}}"
for name, target in {wheel_console_scripts(wheel)!r}.items():
    importlib.metadata.EntryPoint(name, target, "console_scripts").load()
"""
    ran = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
        timeout=120, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert ran.returncode == 0, ran.stderr[-3000:]


# --- the health probe the containers run ------------------------------------------------


async def _probe(service: str, port: int) -> int:
    """Run ``service``'s compose healthcheck command against ``port`` on this machine."""
    argv = services()[service]["healthcheck"]["test"][1:]
    assert argv[0] == "python"
    host, _ = host_port(argv[-1])
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *argv[1:-1], f"{host}:{port}",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    return await asyncio.wait_for(proc.wait(), 30)


async def test_health_probe_passes_on_a_serving_service_and_fails_once_it_stops(
    config_settings, clock
):
    server, port = await create_server(config_settings, clock=clock)
    await server.start()
    try:
        assert await _probe("config", port) == 0
    finally:
        await server.stop(0)
    assert await _probe("config", port) != 0


async def test_health_probe_fails_while_not_serving():
    server = aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        await servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert await _probe("tracker", port) != 0
        await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        assert await _probe("tracker", port) == 0
    finally:
        await server.stop(0)
