"""``python -m goalflow_dev.demo`` (``make demo``): the whole system, end to end.

With nothing running beforehand it starts the stack of ``make run`` on free loopback ports
in a fresh work folder (``.run/demo`` by default), then, narrating each step:

1. creates the goals of ``demo/goals.yaml`` with a start date on the data set's first day.
   The start date may not be in the past (docs/rules.md), so the config service runs with its
   clock at that day (``GOALFLOW_CLOCK_START``), as if the goals had been set up then,
   and is restarted on the real clock before any traffic arrives;
2. replays ``demo/events.jsonl.gz`` (30 days of recorded traffic) with every event moved
   by the same whole number of days, so the last one lands just before now, while a live
   subscription prints the first conversions of one agent as they are recorded;
3. prints a report by agent and one by day of the week;
4. requests an export of one goal's conversions over the 30 days, waits for the mail, and
   shows where it landed, its link, and the first rows of the CSV downloaded from it;
5. prints the web console's address (served by the edge) and the key to sign in with.
   With ``--keep-running`` (``make demo KEEP=1``) everything stays up, the data loaded,
   until Ctrl-C.

Every step that a person could do by hand is done with the ``goalflow`` command-line client
and echoed as ``$ goalflow ...``. Everything started is stopped at the end, also on an
error, Ctrl-C or SIGTERM. The work folder is kept: the mail, the downloaded export and the
logs stay there until the next run.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import email
import email.policy
import gzip
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import yaml
from google.protobuf import json_format

from goalflow_common.pb.goals.v1 import config_pb2
from goalflow_dev.devstack import (
    HOST,
    DevSettings,
    DevStack,
    StackError,
    console_url,
    shown,
)
from goalflow_dev.embedded_mongo import free_port

DEFAULT_EVENTS = Path("demo/events.jsonl.gz")
DEFAULT_GOALS = Path("demo/goals.yaml")
DEFAULT_WORKDIR = Path(".run/demo")
MARKER = ".goalflow-demo"  # marks a folder this demo made, so a rerun may wipe it
RECIPIENT = "you@example.com"
DAY = dt.timedelta(days=1)


class DemoError(Exception):
    """The demo cannot go on; the message says why and where to look."""


# --- output: a transcript, "# " narration, "$ " commands, then what they print -----


def say(text: str = "") -> None:
    click.echo(text)


def narrate(text: str) -> None:
    say(f"# {text}")


def heading(number: int, text: str) -> None:
    say()
    say(click.style(f"== {number}. {text}", bold=True))


def tidy(text: str) -> str:
    """Captured output without the padding tables carry at the end of each line."""
    return "\n".join(line.rstrip() for line in text.rstrip().splitlines())


# --- the data set ---------------------------------------------------------------------


@dataclass
class Replay:
    """The data set as it is replayed: shifted, written to the work folder."""

    path: Path
    events: int
    conversations: int
    shift_days: int
    first_day: dt.date
    last_day: dt.date
    recorded_first_day: dt.date
    followed_agent: str = ""


def _kind(record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    for name in ("conversationOpened", "agentAssigned", "agentUnassigned", "messageSent",
                 "conversationClosed", "satisfactionRated", "endUserActivity"):
        if name in record:
            return name, record[name]
    raise DemoError(f"event {record.get('eventId', '?')!r} has no kind")


def _read_lines(path: Path) -> Iterator[tuple[int, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if line.strip():
                    yield number, line
    except FileNotFoundError:
        raise DemoError(f"no data set at {path} (--events); run `make demo` from the "
                        "repository root") from None


def _read_records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(line, parsed event) for each event of a JSON-lines file (gzipped or not)."""
    for number, line in _read_lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DemoError(f"{path} line {number}: {err}") from None
        if not isinstance(record, dict) or not isinstance(record.get("occurredAt"), str):
            raise DemoError(f"{path} line {number}: an event needs occurredAt")
        yield line, record


def _day_of(timestamp: str) -> dt.date:
    return dt.date.fromisoformat(timestamp[:10])


def _instant(timestamp: str) -> dt.datetime:
    """A proto3 JSON timestamp ("Z" or an offset; up to nanoseconds) as a datetime."""
    try:
        # datetime keeps microseconds: digits past the sixth are dropped.
        when = dt.datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", timestamp))
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise DemoError(f"occurredAt {timestamp!r} is not an RFC 3339 time with an offset")
    return when


class _GoalPages:
    """Picks the agent the live subscription follows: the human agent of the goals' groups
    with the most conversations that reached a page of a goal (a close guess at the
    tracker's attribution, good enough to show conversions arriving)."""

    def __init__(self, goals: list[dict[str, Any]]) -> None:
        self.groups = {group for goal in goals for group in goal.get("agentGroupIds", [])}
        conditions = [c for goal in goals for c in goal.get("conditions", [])]
        self.contains = [c["value"].lower() for c in conditions
                         if c.get("operator") == "CONDITION_OPERATOR_CONTAINS"]
        self.exact = {c["value"].lower().rstrip("/") for c in conditions
                      if c.get("operator") == "CONDITION_OPERATOR_IS"}
        self.latest: dict[str, str] = {}  # end user -> latest conversation
        self.agents: dict[str, set[str]] = collections.defaultdict(set)
        self.reached: set[str] = set()

    def see(self, record: dict[str, Any]) -> None:
        if opened := record.get("conversationOpened"):
            self.latest[opened["endUserId"]] = opened["conversationId"]
        elif assigned := record.get("agentAssigned"):
            agent = assigned["agent"]
            if agent.get("userType") == "USER_TYPE_HUMAN" and agent.get("groupId") in self.groups:
                self.agents[agent["id"]].add(assigned["conversationId"])
        elif activity := record.get("endUserActivity"):
            url = activity.get("url", "").lower()
            if url.rstrip("/") in self.exact or any(value in url for value in self.contains):
                conversation = activity.get("conversationId") or self.latest.get(
                    activity.get("endUserId", ""), "")
                self.reached.add(conversation)

    def agent(self) -> str:
        scores = {agent: (len(ids & self.reached), len(ids)) for agent, ids in self.agents.items()}
        return max(sorted(scores), key=scores.__getitem__, default="")


def prepare_replay(
    source: Path, target: Path, *, conversations: int | None, now: dt.datetime,
    goals: list[dict[str, Any]],
) -> Replay:
    """Keep the first ``conversations`` conversations (all when None) with their end
    users' page views up to their last event, move every event by the same whole number of
    days so that the last one lands just before ``now``, and write them as JSON lines to
    ``target``. The file is in time order (a slice reads only as far as it needs).

    Whole days keep every event's time of day, so a report by hour looks like the
    recording's."""
    chosen = None if conversations is None else _first_conversations(source, conversations)
    kept = _keep(source, chosen)
    shift_days = (now - dt.timedelta(minutes=1) - kept.last).days
    shift = dt.timedelta(days=shift_days)
    pages = _GoalPages(goals)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8") as out:
        for line in kept.lines:
            record = json.loads(line)
            stamp = record["occurredAt"]
            record["occurredAt"] = (_day_of(stamp) + shift).isoformat() + stamp[10:]
            pages.see(record)
            out.write(json.dumps(record, separators=(",", ":")) + "\n")
    return Replay(
        path=target,
        events=len(kept.lines),
        conversations=len(kept.opened_ids),
        shift_days=shift_days,
        first_day=(kept.first + shift).date(),
        last_day=(kept.last + shift).date(),
        recorded_first_day=kept.first.date(),
        followed_agent=pages.agent(),
    )


@dataclass(frozen=True)
class _Slice:
    """The first conversations of a recording: their ids, their end users, and when the
    last of their conversation events happened (None: the recording opens none)."""

    conversation_ids: set[str]
    users: set[str]
    until: dt.datetime | None

    def holds(self, body: dict[str, Any]) -> bool:
        """The event belongs to a kept conversation, or is a page view of a kept end user
        outside a conversation."""
        conversation = body.get("conversationId", "")
        if conversation:
            return conversation in self.conversation_ids
        return body.get("endUserId", "") in self.users


def _first_conversations(source: Path, conversations: int) -> _Slice:
    """First pass: which conversations, and so which end users, are kept, and when the
    last of their conversation events happened (a day after the last one opened, no
    conversation of the data set is still going)."""
    conversation_ids: set[str] = set()
    users: set[str] = set()
    until: dt.datetime | None = None
    last_opened: dt.datetime | None = None
    for _, record in _read_records(source):
        _, body = _kind(record)
        conversation = body.get("conversationId", "")
        when = _instant(record["occurredAt"])
        if last_opened is not None and when > last_opened + DAY:
            break
        if "conversationOpened" in record and len(conversation_ids) < conversations:
            conversation_ids.add(conversation)
            users.add(body["endUserId"])
            if len(conversation_ids) == conversations:
                last_opened = when
        if conversation in conversation_ids:
            until = when if until is None else max(until, when)
    return _Slice(conversation_ids, users, until)


@dataclass(frozen=True)
class _Kept:
    """The lines of the events replayed, the conversations they open, and the times of
    the first and the last."""

    lines: list[str]
    opened_ids: set[str]
    first: dt.datetime
    last: dt.datetime


def _keep(source: Path, chosen: _Slice | None) -> _Kept:
    """Second pass: the events of ``chosen`` (every event when None), in file order."""
    kept: list[str] = []
    first = last = None
    opened_ids: set[str] = set()
    for line, record in _read_records(source):
        kind, body = _kind(record)
        when = _instant(record["occurredAt"])
        if chosen is not None:
            if chosen.until is None or when > chosen.until:
                break  # nothing of the slice is later
            if not chosen.holds(body):
                continue
        if kind == "conversationOpened":
            opened_ids.add(body["conversationId"])
        first = when if first is None else min(first, when)
        last = when if last is None else max(last, when)
        kept.append(line)
    if first is None or last is None:
        raise DemoError(f"{source} holds no events")
    return _Kept(kept, opened_ids, first, last)


def load_goals(path: Path) -> list[dict[str, Any]]:
    """The CreateGoalRequests of a (multi-document) YAML file, checked against the proto."""
    try:
        documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    except FileNotFoundError:
        raise DemoError(f"no goals file at {path} (--goals)") from None
    except yaml.YAMLError as err:
        raise DemoError(f"{path}: {err}") from None
    for number, doc in enumerate(documents, start=1):
        try:
            if not isinstance(doc, dict):
                raise json_format.ParseError("expected a mapping of CreateGoalRequest fields")
            json_format.ParseDict(doc, config_pb2.CreateGoalRequest())
        except json_format.ParseError as err:
            raise DemoError(f"{path}, goal {number}: {err}") from None
    if not documents:
        raise DemoError(f"{path} holds no goals")
    return documents


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "goal"


# --- the goalflow CLI -----------------------------------------------------------------

ADMIN = "GOALFLOW_ADMIN_KEY"
INGEST = "GOALFLOW_INGEST_KEY"
# In a terminal, a line printed while another process draws a progress bar first clears
# the bar's line; the bar is drawn again below it at its next refresh.
CLEAR_LINE = "\r\x1b[2K"


@dataclass
class Cli:
    """Runs ``goalflow`` commands against the demo's stack and echoes each as a person
    would type it; the key and the addresses travel in the environment (``GOALFLOW_KEY``,
    ``GOALFLOW_*_ADDRESS``), as they would in a shell.

    In a terminal the commands write to it directly, so tables fit its width and progress
    bars move; otherwise their output is captured and printed."""

    config: str
    tracker: str
    export: str
    keys: dict[str, str]
    terminal: bool

    @staticmethod
    def argv(args: Sequence[str]) -> list[str]:
        return [sys.executable, "-m", "goalflow_client.cli", *args]

    def env(self, key: str) -> dict[str, str]:
        return {
            **os.environ,
            "GOALFLOW_KEY": self.keys[key],
            "GOALFLOW_CONFIG_ADDRESS": self.config,
            "GOALFLOW_TRACKER_ADDRESS": self.tracker,
            "GOALFLOW_EXPORT_ADDRESS": self.export,
        }

    @staticmethod
    def echo(args: Sequence[str], key: str, suffix: str = "") -> None:
        prefix = "" if key == ADMIN else f"GOALFLOW_KEY=${key} "
        say(click.style(f"$ {prefix}goalflow {shlex.join(args)}{suffix}", fg="cyan"))

    def run(self, *args: str, key: str = ADMIN, capture: bool = False) -> str:
        """Run one command to the end and return its stdout (``capture``, or when not in
        a terminal). A non-zero exit stops the demo."""
        self.echo(args, key)
        pipe = subprocess.PIPE
        # On Ctrl-C, subprocess.run kills the command before the interrupt goes on.
        done = subprocess.run(
            self.argv(args), env=self.env(key), stdin=subprocess.DEVNULL, text=True,
            check=False,
            stdout=pipe if capture or not self.terminal else None,
            stderr=None if self.terminal else pipe,
        )
        for text in (done.stderr, done.stdout):  # notes come before the result
            if text and text.strip():
                say(tidy(text))
        if done.returncode != 0:
            raise DemoError(f"`goalflow {shlex.join(args)}` exited with {done.returncode}"
                            " (its error is above)")
        return done.stdout or ""

    async def start(self, args: Sequence[str], key: str = ADMIN, *, capture: bool = True
                    ) -> asyncio.subprocess.Process:
        """Start a command; with ``capture`` its output is read while it runs
        (:func:`relay`), else it writes to the terminal itself."""
        pipe = asyncio.subprocess.PIPE if capture else None
        return await asyncio.create_subprocess_exec(
            *self.argv(args), env=self.env(key), stdin=asyncio.subprocess.DEVNULL,
            stdout=pipe, stderr=pipe,
        )


async def relay(
    stream: asyncio.StreamReader | None, prefix: str, lines: list[str],
    arrived: asyncio.Event | None = None,
) -> None:
    """Print each line of a command's output as it arrives, keep it, and set ``arrived``."""
    if stream is None:
        return
    while raw := await stream.readline():
        # A bar drawn without a terminal arrives as one line of \r-separated states.
        text = raw.decode(errors="replace").rstrip("\n").split("\r")[-1].rstrip()
        lines.append(text)
        say(f"{prefix}{text}")
        if arrived is not None:
            arrived.set()


# --- the demo -------------------------------------------------------------------------


@dataclass
class Options:
    events: Path
    goals: Path
    workdir: Path
    conversations: int | None
    live: int
    export_goal: int
    keep_running: bool = False


class Demo:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.workdir = options.workdir.resolve()
        self.terminal = sys.stdout.isatty() and sys.stderr.isatty()
        self.stack: DevStack | None = None

    def fresh_workdir(self) -> None:
        folder = self.workdir
        if folder.exists() and any(folder.iterdir()):
            if not (folder / MARKER).exists():
                raise DemoError(
                    f"{folder} exists and was not made by the demo; pick an empty or new "
                    "folder with --workdir"
                )
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MARKER).write_text("made by python -m goalflow_dev.demo\n")

    def make_stack(self) -> DevStack:
        settings = DevSettings(
            dir=self.workdir,
            mongodb_uri="",  # always a fresh embedded database in the work folder
            mongo_port=free_port(HOST),
            smtp_port=free_port(HOST),
            config_port=free_port(HOST),
            tracker_port=free_port(HOST),
            export_port=free_port(HOST),
            export_http_port=free_port(HOST),
            edge_port=free_port(HOST),
        )
        return DevStack(settings)

    def run(self) -> None:
        started = time.monotonic()
        opts = self.options
        self.fresh_workdir()
        goals = load_goals(opts.goals)
        replay = prepare_replay(
            opts.events, self.workdir / "replay" / "events.jsonl",
            conversations=opts.conversations, now=dt.datetime.now(dt.UTC), goals=goals,
        )
        days = (replay.last_day - replay.first_day).days + 1
        say(click.style("goalflow demo", bold=True))
        narrate(f"{replay.conversations:,} conversations, {replay.events:,} events from "
                f"{shown(opts.events)}, recorded from {replay.recorded_first_day}.")
        narrate(f"Replayed {replay.shift_days} days later: {replay.first_day} to "
                f"{replay.last_day} (UTC), the last event just before now.")
        narrate(f"Work folder {shown(self.workdir)}/, kept afterwards (mail, export, logs).")

        heading(1, "Start the stack, with the config service's clock on the first day")
        self.stack = stack = self.make_stack()
        clock_start = f"{replay.first_day.isoformat()}T00:00:00Z"
        narrate(f"Goals may not start in the past, so config runs with "
                f"GOALFLOW_CLOCK_START={clock_start}")
        narrate("for now: for it, today is the data set's first day.")
        stack.start(["config"], env={"config": {"GOALFLOW_CLOCK_START": clock_start}})
        config, tracker, export = (spec.address for spec in stack.services[:3])
        cli = Cli(config, tracker, export, stack.keys, self.terminal)
        narrate(f"database   {stack.mongo_uri}, data in {shown(stack.dir / 'mongo')}/")
        narrate(f"smtp sink  {HOST}:{stack.settings.smtp_port}, mail lands in "
                f"{shown(stack.outbox)}/")
        narrate(f"config     {config}")
        narrate(f"Keys are in {shown(stack.key_file)}. The commands below run with "
                f"GOALFLOW_KEY=${ADMIN} unless they say")
        narrate("otherwise, and GOALFLOW_{CONFIG,TRACKER,EXPORT}_ADDRESS pointing at this "
                "stack (`make run`'s are the defaults).")

        heading(2, f"Create {len(goals)} goals starting {replay.first_day}, the first day")
        if days > 1:
            narrate(f"As if they had been set up {days - 1} days ago.")
        goal_ids = [self.create_goal(cli, number, goal, replay.first_day)
                    for number, goal in enumerate(goals, start=1)]

        heading(3, "Back to the real clock: restart config, start the tracker and export")
        stack.stop_service("config")
        stack.start_services(["config", "tracker", "export", "edge"])
        narrate(f"config {config}, tracker {tracker}, export {export}")
        narrate(f"signed download links on http://{HOST}:{stack.settings.export_http_port}")
        cli.run("goals", "list")

        heading(4, f"Replay {days} day{'s' * (days != 1)} of traffic: "
                   f"{replay.events:,} events")
        asyncio.run(self.replay(cli, replay))

        heading(5, "Reports over the conversations opened in those days (UTC)")
        period = ("--from", replay.first_day.isoformat(), "--to", replay.last_day.isoformat())
        cli.run("report", *period, "--by", "agent", "--format", "table")
        cli.run("report", *period, "--by", "day-of-week", "--format", "table")

        index = min(opts.export_goal, len(goals)) - 1
        heading(6, f"Export the conversions of {goals[index]['name']!r}, mailed as a link")
        cli.run("export", "request", "--goal", goal_ids[index], *period,
                "--email", RECIPIENT, "--wait")
        self.show_mail(stack.outbox)

        heading(7, "The web console")
        edge = stack.services[3]
        narrate(f"Open {console_url(edge)} and sign in with the admin key "
                f"({ADMIN} in {shown(stack.key_file)}):")
        say(f"  {stack.keys[ADMIN]}")
        narrate("Goals, reports over the same days as charts, exports, and (with an agent "
                "key and its agent id) an agent's live conversions.")
        say()
        narrate(f"Done in {time.monotonic() - started:.0f} s.")
        if opts.keep_running:
            narrate(f"Everything stays up for the console at {console_url(edge)}: Ctrl-C "
                    "stops it.")
            try:
                stack.wait()
            except KeyboardInterrupt:  # the way this run is meant to end: not an error
                say()

    def create_goal(self, cli: Cli, number: int, goal: dict[str, Any], day: dt.date) -> str:
        """Write the goal with its start date to its own file, create it, return its id."""
        request = {**goal, "startDate": {"year": day.year, "month": day.month, "day": day.day}}
        path = self.workdir / "goals" / f"{number}-{_slug(str(goal.get('name', '')))}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(request, sort_keys=False, width=200))
        lines = cli.run("goals", "create", "--file", shown(path), capture=True).split()
        if not lines:
            raise DemoError(f"`goalflow goals create` printed no goal id for {path}")
        return lines[-1]

    async def replay(self, cli: Cli, replay: Replay) -> None:
        """``events send`` with a live ``conversions tail`` next to it."""
        live, agent = self.options.live, replay.followed_agent
        tail = None
        started: list[asyncio.subprocess.Process] = []
        relaying: asyncio.Future[Any] | None = None
        prefix = (CLEAR_LINE if self.terminal else "") + "  live | "
        try:
            if agent and live > 0:
                tail_args = ("conversions", "tail", "--agent", agent, "--count", str(live))
                narrate(f"In the background, a live subscription prints the first {live} "
                        f"conversions credited to {agent}")
                narrate("(the agent with the most chats that reached a goal's page) as they "
                        "are recorded:")
                cli.echo(tail_args, ADMIN, " &")
                tail = await cli.start(tail_args)
                started.append(tail)
                registered = asyncio.Event()
                relaying = asyncio.gather(relay(tail.stdout, prefix, []),
                                          relay(tail.stderr, prefix, [], registered))
                # The tail says so on stderr once the subscription is registered; if it
                # fails instead, its error is relayed and the replay goes on without it.
                waiting = [asyncio.ensure_future(registered.wait()),
                           asyncio.ensure_future(tail.wait())]
                await asyncio.wait(waiting, timeout=20, return_when=asyncio.FIRST_COMPLETED)
                for task in waiting:
                    task.cancel()
            send_args = ("events", "send", shown(replay.path))
            cli.echo(send_args, INGEST)
            # In a terminal the progress bar draws itself; otherwise its last state and the
            # summary are relayed.
            send = await cli.start(send_args, INGEST, capture=not self.terminal)
            started.append(send)
            output: list[str] = []
            await asyncio.gather(relay(send.stdout, "", output), relay(send.stderr, "", output))
            if await send.wait() != 0:
                raise DemoError(f"`goalflow events send` exited with {send.returncode}"
                                " (its error is above)")
            if tail is not None:
                try:
                    # Each acknowledged batch's conversions are already published.
                    await asyncio.wait_for(tail.wait(), 2)
                except TimeoutError:
                    say(f"{prefix}(fewer than {live} for {agent}; the tail is stopped)")
        finally:
            # Done, failed or interrupted: no command outlives this step.
            for proc in started:
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
            if relaying is not None:
                await relaying

    def show_mail(self, outbox: Path) -> None:
        deadline = time.monotonic() + 30
        while not (mails := sorted(outbox.glob("*.eml"))):
            if time.monotonic() > deadline:
                raise DemoError(f"no mail arrived in {shown(outbox)}/")
            time.sleep(0.2)
        mail_path = mails[-1]
        message = email.message_from_bytes(mail_path.read_bytes(), policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",))
        match = re.search(r"https?://\S+", body.get_content() if body is not None else "")
        if match is None:
            raise DemoError(f"the mail {shown(mail_path)} holds no link")
        link = match.group(0)
        say()
        narrate(f"The SMTP sink wrote the mail to {shown(mail_path)}:")
        narrate(f"  To: {message['To']}, Subject: {message['Subject']}")
        narrate(f"The link in it: {link}")
        data, filename = _download(link)
        saved = self.workdir / "downloads" / filename
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_bytes(data)
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            [entry] = archive.namelist()
            rows = archive.read(entry).decode("utf-8-sig").splitlines()
        narrate(f"Downloaded {len(data):,} bytes to {shown(saved)}; it holds {entry}, "
                f"{len(rows) - 1:,} rows")
        narrate("(one per credited agent). Its first lines:")
        say("\n".join(rows[:6]))


def _download(link: str) -> tuple[bytes, str]:
    try:
        with urllib.request.urlopen(link, timeout=30) as reply:
            disposition = reply.headers.get("Content-Disposition", "")
            data = reply.read()
    except OSError as err:  # urllib's HTTPError and URLError included
        raise DemoError(f"downloading {link}: {err}") from None
    match = re.search(r'filename="([^"]+)"', disposition)
    return data, Path(match.group(1)).name if match else "export.zip"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--events", type=click.Path(path_type=Path), default=DEFAULT_EVENTS,
              show_default=True, help="The data set: goals.v1.Event JSON lines, .gz or not.")
@click.option("--goals", type=click.Path(path_type=Path), default=DEFAULT_GOALS,
              show_default=True, help="CreateGoalRequests, one per YAML document.")
@click.option("--workdir", type=click.Path(path_type=Path), default=DEFAULT_WORKDIR,
              show_default=True,
              help="Work folder, emptied first if an earlier demo made it; kept afterwards.")
@click.option("--conversations", type=click.IntRange(min=1), default=None,
              help="Replay only the first N conversations (a quicker run).")
@click.option("--live", type=click.IntRange(min=0), default=5, show_default=True,
              help="How many conversions the live subscription prints (0: none).")
@click.option("--export-goal", type=click.IntRange(min=1), default=3, show_default=True,
              help="Which goal of the goals file to export (1 = the first).")
@click.option("--keep-running", is_flag=True,
              help="Keep everything up after the demo, for the web console, until Ctrl-C.")
def main(events: Path, goals: Path, workdir: Path, conversations: int | None, live: int,
         export_goal: int, keep_running: bool) -> None:
    """The goalflow demo: start everything, replay 30 days of traffic, show the results.

    Needs nothing running beforehand; stops everything it started, also on Ctrl-C."""
    demo = Demo(Options(events, goals, workdir, conversations, live, export_goal, keep_running))
    # SIGTERM ends the demo as Ctrl-C does: the current step stops, the cleanup runs.
    signal.signal(signal.SIGTERM, _interrupt)
    code = 1
    try:
        demo.run()
        code = 0
    except (DemoError, StackError) as err:
        click.echo(f"demo: error: {err}", err=True)
        if demo.stack is not None:
            click.echo(f"demo: the service logs are in {shown(demo.stack.logs)}/", err=True)
    except KeyboardInterrupt:
        click.echo("\ndemo: interrupted", err=True)
        code = 130
    finally:
        if demo.stack is not None:
            # A second Ctrl-C must not leave children behind: ignored while stopping.
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_IGN)
            narrate("Stopping everything the demo started ...")
            demo.stack.stop()
            narrate("Stopped; nothing is left running.")
    sys.exit(code)


if __name__ == "__main__":
    main()
