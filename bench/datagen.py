"""Realistic, deterministic tracker traffic: the ingest benchmark's load, reusable by demos.

Everything follows from a seed (one ``random.Random``), so the same seed, size and start
time give the same events, byte for byte.

- :func:`workforce` — the agents (60 humans in six groups), three triage bots and a survey
  bot that the traffic assigns.
- :func:`goal_requests` — 15 active goals (``CreateGoalRequest``) of 100 URL conditions
  each (CONTAINS and IS), spread over the three attribution models, periods 0/1/7/14/31 and
  the workforce's groups, starting on a given day.
- :func:`generate` — a :class:`Traffic`: sessions of one end user each, i.e. pre-chat page
  views, a conversation (opened on a weighted channel, an optional triage bot, an agent
  from a group serving the skill, interleaved messages, transfers, back-to-queue, page
  views that sometimes hit a goal with a purchase or lead, a survey bot, close, rating,
  sometimes a reopen) and page views after it. A session's events are in time order and
  sessions overlap in time; :attr:`Traffic.events` is every event in time order.

Conversations open over ``duration`` from ``start`` and their follow-ups run at most a few
hours past that, so with ``start`` at midnight UTC of today (the goals' start date) and
the default eight hours every event is inside the goals' tracking and inside the tracker's
"at most a day ahead" limit.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from goalflow_common.pb.goals.v1 import common_pb2, config_pb2, tracker_pb2

SHOP = "https://shop.example.com"
GOALS = 15
CONDITIONS_PER_GOAL = 100
PERIODS = (0, 1, 7, 14, 31)
MODELS = (
    config_pb2.ATTRIBUTION_MODEL_FIRST_TOUCH,
    config_pb2.ATTRIBUTION_MODEL_LAST_TOUCH,
    config_pb2.ATTRIBUTION_MODEL_ALL_TOUCHES,
)

# Skill -> the human groups that serve it.
SKILL_GROUPS: dict[str, tuple[str, ...]] = {
    "sales": ("sales-emea", "sales-amer"),
    "support": ("support-t1", "support-t2"),
    "billing": ("billing",),
    "retention": ("retention",),
}
SKILL_WEIGHTS = {"sales": 40, "support": 35, "billing": 15, "retention": 10}
AGENTS_PER_GROUP = 10
BOT_GROUP = "bots"
SURVEY_GROUP = "surveys"

# Mostly first-party channels; a few % on the two that never convert.
CHANNEL_WEIGHTS: dict[int, float] = {
    tracker_pb2.CHANNEL_WEB_WIDGET: 38,
    tracker_pb2.CHANNEL_IOS_SDK: 15,
    tracker_pb2.CHANNEL_ANDROID_SDK: 15,
    tracker_pb2.CHANNEL_WHATSAPP: 12,
    tracker_pb2.CHANNEL_FACEBOOK_MESSENGER: 5,
    tracker_pb2.CHANNEL_INSTAGRAM: 3,
    tracker_pb2.CHANNEL_APPLE_MESSAGES_FOR_BUSINESS: 2,
    tracker_pb2.CHANNEL_LINE: 1,
    tracker_pb2.CHANNEL_TELEGRAM: 1,
    tracker_pb2.CHANNEL_GOOGLE_RCS: 1,
    tracker_pb2.CHANNEL_THIRD_PARTY_BOT: 3,
    tracker_pb2.CHANNEL_UNITY_SDK: 2,
}

# One goal per site area; the last one ("any thank-you page") overlaps the IS conditions
# of the others, so some URLs hit two goals at once.
_AREAS = (
    ("checkout", config_pb2.GOAL_TYPE_SELL_PRODUCT_OR_SERVICE),
    ("subscribe", config_pb2.GOAL_TYPE_SELL_PRODUCT_OR_SERVICE),
    ("upgrade", config_pb2.GOAL_TYPE_SELL_PRODUCT_OR_SERVICE),
    ("renewal", config_pb2.GOAL_TYPE_SELL_PRODUCT_OR_SERVICE),
    ("gift-cards", config_pb2.GOAL_TYPE_SELL_PRODUCT_OR_SERVICE),
    ("demo-request", config_pb2.GOAL_TYPE_GENERATE_LEADS),
    ("quote", config_pb2.GOAL_TYPE_GENERATE_LEADS),
    ("trial", config_pb2.GOAL_TYPE_GENERATE_LEADS),
    ("callback", config_pb2.GOAL_TYPE_GENERATE_LEADS),
    ("webinar", config_pb2.GOAL_TYPE_GENERATE_LEADS),
    ("returns", config_pb2.GOAL_TYPE_SERVICE_ACTIVITY_COMPLETE),
    ("address-change", config_pb2.GOAL_TYPE_SERVICE_ACTIVITY_COMPLETE),
    ("plan-change", config_pb2.GOAL_TYPE_SERVICE_ACTIVITY_COMPLETE),
    ("newsletter", config_pb2.GOAL_TYPE_OTHER),
    ("thank-you", config_pb2.GOAL_TYPE_OTHER),
)
_HUMAN_GROUPS = tuple(g for groups in SKILL_GROUPS.values() for g in groups)
# Pages that match no goal condition (no "/<area>/" segment, no "/thank-you").
_BROWSE_PAGES: tuple[Callable[[random.Random], str], ...] = (
    lambda r: f"{SHOP}/products/sku-{r.randrange(100_000):05d}",
    lambda r: f"{SHOP}/category/{r.choice(('shoes', 'bags', 'watches', 'home'))}"
              f"?page={r.randrange(1, 20)}",
    lambda r: f"{SHOP}/search?q={r.choice(('red+dress', 'usb-c', 'sale', 'gift'))}",
    lambda r: f"{SHOP}/blog/{r.choice(('care-guide', 'new-in', 'sizing', 'faq'))}",
    lambda r: f"{SHOP}/cart",
    lambda r: f"{SHOP}/account/orders/{r.randrange(10**6)}",
    lambda r: f"{SHOP}/help/articles/{r.randrange(1, 400)}",
    lambda r: f"{SHOP}/",
)
_FIRST = ("Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ivo", "Jun",
          "Kemal", "Lea", "Mina", "Noah", "Olga", "Pavel", "Quinn", "Rosa", "Sami", "Tara")
_LAST = ("Lopez", "Smith", "Wang", "Okafor", "Novak", "Haddad", "Ivanova", "Kim", "Rossi",
         "Silva", "Nguyen", "Berg")


# -- who works the conversations -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Participant:
    """An agent, bot or survey bot as an assignment describes it."""

    id: str
    name: str
    email: str
    group_id: str
    skill: str
    user_type: int  # tracker_pb2.UserType
    survey_bot: bool = False

    def to_proto(self) -> tracker_pb2.Agent:
        return tracker_pb2.Agent(
            id=self.id, name=self.name, email=self.email, group_id=self.group_id,
            skill=self.skill, user_type=self.user_type, survey_bot=self.survey_bot,
        )


@dataclass(frozen=True, slots=True)
class Workforce:
    agents: dict[str, tuple[Participant, ...]]  # human group -> its agents
    bots: tuple[Participant, ...]
    survey_bot: Participant

    @property
    def groups(self) -> tuple[str, ...]:
        """Every group an assignment can carry: the human ones, bots and surveys."""
        return (*self.agents, BOT_GROUP, SURVEY_GROUP)


def workforce() -> Workforce:
    """The fixed cast: 10 humans per group, three triage bots, one survey bot."""
    agents: dict[str, tuple[Participant, ...]] = {}
    number = 0
    for skill, groups in SKILL_GROUPS.items():
        for group in groups:
            members = []
            for i in range(AGENTS_PER_GROUP):
                first, last = _FIRST[number % len(_FIRST)], _LAST[number % len(_LAST)]
                members.append(Participant(
                    id=f"agent-{group}-{i:02d}", name=f"{first} {last}",
                    email=f"{first.lower()}.{last.lower()}{number}@shop.example.com",
                    group_id=group, skill=skill, user_type=tracker_pb2.USER_TYPE_HUMAN,
                ))
                number += 1
            agents[group] = tuple(members)
    bots = tuple(
        Participant(id=f"bot-triage-{i}", name=f"Triage bot {i}", email="", group_id=BOT_GROUP,
                    skill="triage", user_type=tracker_pb2.USER_TYPE_BOT)
        for i in range(3)
    )
    survey = Participant(id="bot-survey", name="Survey bot", email="", group_id=SURVEY_GROUP,
                         skill="survey", user_type=tracker_pb2.USER_TYPE_BOT, survey_bot=True)
    return Workforce(agents, bots, survey)


# -- goals ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GoalSpec:
    """One goal of the catalog and the URLs that hit it."""

    number: int
    area: str
    goal_type: int
    conditions: tuple[tuple[int, str], ...]  # (config_pb2.ConditionOperator, value)

    def hit_url(self, rng: random.Random) -> str:
        """A URL matching one of this goal's conditions, as a browser would send it."""
        operator, value = rng.choice(self.conditions)
        if operator == config_pb2.CONDITION_OPERATOR_IS:
            # IS ignores the case of scheme and host and one trailing slash.
            variant = rng.random()
            if variant < 0.2:
                return value.replace(SHOP, SHOP.upper())
            return value + "/" if variant < 0.4 else value
        return f"{SHOP}{value}?ref=chat&n={rng.randrange(10**6)}"


def goal_catalog() -> tuple[GoalSpec, ...]:
    """The 15 goals: per goal about two thirds CONTAINS on "/<area>/...", one third IS on
    "<shop>/<area>/thank-you/..." (which the last goal's CONTAINS "/thank-you" also
    matches)."""
    catalog = []
    for number, (area, goal_type) in enumerate(_AREAS):
        conditions = []
        for k in range(CONDITIONS_PER_GOAL):
            if area == "thank-you" and k == 0:
                conditions.append((config_pb2.CONDITION_OPERATOR_CONTAINS, "/thank-you"))
            elif k % 3 == 0:
                conditions.append(
                    (config_pb2.CONDITION_OPERATOR_IS, f"{SHOP}/{area}/thank-you/{k:03d}")
                )
            else:
                conditions.append(
                    (config_pb2.CONDITION_OPERATOR_CONTAINS, f"/{area}/done-{k:03d}/")
                )
        catalog.append(GoalSpec(number, area, goal_type, tuple(conditions)))
    return tuple(catalog)


def _goal_groups(number: int) -> list[str]:
    """Two to four human groups per goal, rotating; every third goal also credits bots."""
    size = 2 + number % 3
    groups = [_HUMAN_GROUPS[(number + i) % len(_HUMAN_GROUPS)] for i in range(size)]
    if number % 3 == 2:
        groups.append(BOT_GROUP)
    return groups


def goal_requests(today: dt.date) -> list[config_pb2.CreateGoalRequest]:
    """The catalog as 15 active CreateGoalRequests starting ``today`` (no end date)."""
    requests = []
    for spec in goal_catalog():
        value = None
        if spec.goal_type == config_pb2.GOAL_TYPE_SELL_PRODUCT_OR_SERVICE:
            value = common_pb2.Money(currency_code="USD", amount=f"{49 + 10 * spec.number}.90")
        elif spec.goal_type == config_pb2.GOAL_TYPE_GENERATE_LEADS:
            value = common_pb2.Money(currency_code="EUR", amount="25")
        requests.append(config_pb2.CreateGoalRequest(
            name=f"Bench {spec.number + 1:02d} {spec.area}",
            description=f"Visitors who complete /{spec.area}/ after a chat",
            active=True,
            start_date=common_pb2.Date(year=today.year, month=today.month, day=today.day),
            agent_group_ids=_goal_groups(spec.number),
            attribution_model=MODELS[spec.number % len(MODELS)],
            attribution_period_days=PERIODS[spec.number % len(PERIODS)],
            transaction_value=value,
            goal_type=spec.goal_type,
            conditions=[
                config_pb2.Condition(category=config_pb2.CONDITION_CATEGORY_URL,
                                     operator=operator, value=url)
                for operator, url in spec.conditions
            ],
        ))
    return requests


# -- traffic -------------------------------------------------------------------------------


@dataclass(slots=True)
class Session:
    """One end user's visit: its conversation and the page views around it."""

    conversation_id: str
    end_user_id: str
    channel: int
    events: list[tuple[int, int, tracker_pb2.Event]] = field(default_factory=list)
    # (occurred_at in ms since the epoch, sequence number, event)


@dataclass(frozen=True, slots=True)
class Traffic:
    """Generated events. ``events`` is every event in time order (ties in generation
    order); a session's events keep their order in it."""

    events: list[tracker_pb2.Event]
    sessions: list[Session]

    def partition(self, parts: int) -> list[list[tracker_pb2.Event]]:
        """Split ``events`` into ``parts`` time-ordered streams, each owning whole end users
        (and so whole conversations), as independent producers would."""
        owner: dict[str, int] = {}
        for session in self.sessions:
            owner.setdefault(session.end_user_id, len(owner) % parts)
        conversation_owner = {s.conversation_id: owner[s.end_user_id] for s in self.sessions}
        streams: list[list[tracker_pb2.Event]] = [[] for _ in range(parts)]
        for event in self.events:
            kind = event.WhichOneof("kind")
            msg = getattr(event, kind)
            if kind == "end_user_activity":
                part = owner[msg.end_user_id]
            else:
                part = conversation_owner[msg.conversation_id]
            streams[part].append(event)
        return streams


class _Writer:
    """Appends one session's events, advancing its clock."""

    def __init__(self, gen: TrafficGenerator, session: Session, t_ms: int) -> None:
        self.gen = gen
        self.rng = gen.rng
        self.session = session
        self.t = t_ms

    def wait(self, low_s: float, high_s: float) -> None:
        self.t += int(self.rng.uniform(low_s, high_s) * 1000)

    def _emit(self, **kind: object) -> None:
        event = tracker_pb2.Event(event_id=self.gen.next_event_id(), **kind)
        event.occurred_at.FromMilliseconds(self.t)
        self.session.events.append((self.t, self.gen.next_sequence(), event))

    def opened(self, skill: str) -> None:
        s = self.session
        self._emit(conversation_opened=tracker_pb2.ConversationOpened(
            conversation_id=s.conversation_id, end_user_id=s.end_user_id, channel=s.channel,
            skill=skill))

    def assigned(self, who: Participant, reason: int) -> None:
        self._emit(agent_assigned=tracker_pb2.AgentAssigned(
            conversation_id=self.session.conversation_id, agent=who.to_proto(),
            start_reason=reason))

    def unassigned(self, who: Participant, reason: int) -> None:
        self._emit(agent_unassigned=tracker_pb2.AgentUnassigned(
            conversation_id=self.session.conversation_id, agent_id=who.id, end_reason=reason))

    def message(self, author_type: int, author_id: str) -> None:
        self._emit(message_sent=tracker_pb2.MessageSent(
            conversation_id=self.session.conversation_id, author_type=author_type,
            author_id=author_id))

    def user_says(self) -> None:
        self.message(tracker_pb2.AUTHOR_TYPE_END_USER, self.session.end_user_id)

    def closed(self) -> None:
        self._emit(conversation_closed=tracker_pb2.ConversationClosed(
            conversation_id=self.session.conversation_id))

    def rated(self) -> None:
        rating = self.rng.choice(("good", "good", "bad", "5", "4", "3", "1"))
        self._emit(satisfaction_rated=tracker_pb2.SatisfactionRated(
            conversation_id=self.session.conversation_id, rating=rating))

    def page_view(self, *, in_conversation: bool, hit_chance: float) -> None:
        """A page view: a goal hit (sometimes with a purchase or lead) with ``hit_chance``,
        else a page that matches no goal. Inside a conversation the SDK names it about
        half of the time; otherwise the tracker resolves the end user's latest one."""
        rng = self.rng
        activity = tracker_pb2.EndUserActivity(end_user_id=self.session.end_user_id)
        if in_conversation and rng.random() < 0.5:
            activity.conversation_id = self.session.conversation_id
        if rng.random() < hit_chance:
            goal = rng.choice(self.gen.catalog)
            activity.url = goal.hit_url(rng)
            roll = rng.random()
            if roll < 0.45:
                amount = f"{rng.randrange(5, 900)}.{rng.randrange(100):02d}"
                activity.transaction.CopyFrom(tracker_pb2.Transaction(
                    value=common_pb2.Money(currency_code="USD", amount=amount),
                    brand_event_id=f"order-{rng.randrange(10**9)}",
                    event_type=tracker_pb2.TRANSACTION_EVENT_TYPE_PURCHASE))
            elif roll < 0.65:
                activity.transaction.CopyFrom(tracker_pb2.Transaction(
                    value=common_pb2.Money(currency_code="EUR", amount=str(rng.choice((10, 25)))),
                    brand_event_id=f"lead-{rng.randrange(10**9)}",
                    event_type=tracker_pb2.TRANSACTION_EVENT_TYPE_LEAD))
        else:
            activity.url = rng.choice(_BROWSE_PAGES)(rng)
        self._emit(end_user_activity=activity)


class TrafficGenerator:
    """Builds sessions from one seeded RNG. Use :func:`generate` unless you need the parts."""

    def __init__(self, seed: int, start: dt.datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be an aware datetime")
        self.seed = seed
        self.rng = random.Random(seed)
        self.start_ms = int(start.timestamp() * 1000)
        self.staff = workforce()
        self.catalog = goal_catalog()
        self._event_number = 0
        self._sequence = 0
        self._channels = list(CHANNEL_WEIGHTS)
        self._channel_weights = list(CHANNEL_WEIGHTS.values())
        self._users: list[str] = []

    def next_event_id(self) -> str:
        self._event_number += 1
        return f"ev-{self.seed}-{self._event_number:08d}"

    def next_sequence(self) -> int:
        self._sequence += 1
        return self._sequence

    def _agent(self, skill: str, *, besides: Participant | None = None) -> Participant:
        group = self.rng.choice(SKILL_GROUPS[skill])
        choices = [a for a in self.staff.agents[group] if a is not besides]
        return self.rng.choice(choices)

    def _dialogue(self, w: _Writer, agent: Participant, exchanges: int, hit_chance: float) -> None:
        """End user and agent take turns; the end user browses (and converts) in between."""
        rng = self.rng
        for _ in range(exchanges):
            for _ in range(rng.choice((1, 1, 2))):
                w.wait(5, 60)
                w.user_says()
            for _ in range(rng.choice((1, 1, 2, 3))):
                w.wait(10, 90)
                w.message(tracker_pb2.AUTHOR_TYPE_AGENT, agent.id)
            if rng.random() < 0.3:
                w.wait(5, 120)
                w.page_view(in_conversation=True, hit_chance=hit_chance)

    def session(self, number: int, arrival_ms: int) -> Session:
        """One end user's visit arriving at ``arrival_ms``; about 30 events on average."""
        rng = self.rng
        user = self._visitor()
        channel = rng.choices(self._channels, self._channel_weights)[0]
        session = Session(f"conv-{self.seed}-{number:07d}", user, channel)
        w = _Writer(self, session, arrival_ms)
        hit_chance = 0.35  # of a page view during or after the conversation

        for _ in range(rng.choice((0, 1, 2, 3, 4))):  # browsing before the chat
            w.page_view(in_conversation=False, hit_chance=0.03)
            w.wait(10, 90)
        skill = rng.choices(list(SKILL_WEIGHTS), list(SKILL_WEIGHTS.values()))[0]
        self._open(w, skill)

        bot_only = channel == tracker_pb2.CHANNEL_THIRD_PARTY_BOT
        agent = self._first_assignment(w, skill, bot_only=bot_only)
        if agent is not None:  # None: abandoned in the queue, already closed
            self._dialogue(w, agent, rng.randrange(2, 9), hit_chance)
            if not bot_only:
                agent = self._change_hands(w, agent, skill, hit_chance)
            if rng.random() < 0.92:
                self._close(w, agent, skill, bot_only=bot_only, hit_chance=hit_chance)
        return self._after(w, session, hit_chance)

    def _visitor(self) -> str:
        """The end user: sometimes a returning visitor, else a new one."""
        rng = self.rng
        if self._users and rng.random() < 0.1:
            return rng.choice(self._users)
        user = f"user-{self.seed}-{len(self._users):07d}"
        self._users.append(user)
        return user

    @staticmethod
    def _open(w: _Writer, skill: str) -> None:
        """The end user opens (or reopens) the conversation and writes first."""
        w.opened(skill)
        w.wait(1, 5)
        w.user_says()

    def _first_assignment(self, w: _Writer, skill: str, *, bot_only: bool) -> Participant | None:
        """Who answers first: a triage bot (always on the third-party bot channel), else an
        agent taking it from the queue. None if the end user gives up in the queue, which
        closes the conversation with no agent."""
        rng = self.rng
        if bot_only or rng.random() < 0.25:
            return self._triage(w, skill, bot_only=bot_only)
        if rng.random() < 0.04:
            w.wait(60, 600)
            w.closed()
            return None
        w.wait(10, 240)  # queue time
        agent = self._agent(skill)
        w.assigned(agent, tracker_pb2.SEGMENT_START_REASON_TAKEN_FROM_QUEUE)
        return agent

    def _triage(self, w: _Writer, skill: str, *, bot_only: bool) -> Participant:
        """A triage bot talks with the end user; on a bot-only channel it keeps the
        conversation, else it hands it to an agent of the skill. Returns who has it."""
        rng = self.rng
        bot = rng.choice(self.staff.bots)
        w.assigned(bot, tracker_pb2.SEGMENT_START_REASON_TAKEN_FROM_QUEUE)
        for _ in range(rng.randrange(1, 4)):
            w.wait(1, 4)
            w.message(tracker_pb2.AUTHOR_TYPE_BOT, bot.id)
            w.wait(5, 40)
            w.user_says()
        if bot_only:
            return bot
        w.unassigned(bot, tracker_pb2.SEGMENT_END_REASON_SKILL_TRANSFER)
        w.wait(5, 120)
        agent = self._agent(skill)
        w.assigned(agent, tracker_pb2.SEGMENT_START_REASON_SKILL_TRANSFER)
        return agent

    def _change_hands(
        self, w: _Writer, agent: Participant, skill: str, hit_chance: float
    ) -> Participant:
        """Sometimes a human agent passes the conversation on: a transfer (15 %) or back
        to the queue (5 %). Returns who has it afterwards."""
        roll = self.rng.random()
        if roll < 0.15:
            return self._transfer(w, agent, skill, hit_chance)
        if roll < 0.20:
            return self._back_to_queue(w, agent, skill, hit_chance)
        return agent

    def _transfer(
        self, w: _Writer, agent: Participant, skill: str, hit_chance: float
    ) -> Participant:
        """Transfer to another agent, of the same skill or (a skill transfer) maybe another."""
        rng = self.rng
        end_reason, start_reason = rng.choice((
            (tracker_pb2.SEGMENT_END_REASON_AGENT_TRANSFER,
             tracker_pb2.SEGMENT_START_REASON_AGENT_TRANSFER),
            (tracker_pb2.SEGMENT_END_REASON_SKILL_TRANSFER,
             tracker_pb2.SEGMENT_START_REASON_SKILL_TRANSFER),
        ))
        w.unassigned(agent, end_reason)
        w.wait(2, 60)
        target = skill if end_reason == tracker_pb2.SEGMENT_END_REASON_AGENT_TRANSFER \
            else rng.choice(list(SKILL_GROUPS))
        agent = self._agent(target, besides=agent)
        w.assigned(agent, start_reason)
        self._dialogue(w, agent, rng.randrange(1, 5), hit_chance)
        return agent

    def _back_to_queue(
        self, w: _Writer, agent: Participant, skill: str, hit_chance: float
    ) -> Participant:
        """Back to the queue, then another agent of the skill takes it."""
        rng = self.rng
        w.unassigned(agent, tracker_pb2.SEGMENT_END_REASON_BACK_TO_QUEUE)
        w.wait(30, 300)
        if rng.random() < 0.3:
            w.page_view(in_conversation=True, hit_chance=hit_chance)  # nobody assigned
            w.wait(5, 60)
        agent = self._agent(skill, besides=agent)
        w.assigned(agent, tracker_pb2.SEGMENT_START_REASON_TAKEN_FROM_QUEUE)
        self._dialogue(w, agent, rng.randrange(1, 4), hit_chance)
        return agent

    def _close(
        self, w: _Writer, agent: Participant, skill: str, *, bot_only: bool, hit_chance: float
    ) -> None:
        """Close the conversation (sometimes after the survey bot), maybe a rating, and
        sometimes a reopen."""
        rng = self.rng
        if not bot_only and rng.random() < 0.2:
            agent = self._survey(w, agent)
        w.wait(5, 120)
        w.closed()
        if rng.random() < 0.35:
            w.wait(5, 300)
            w.rated()
        if rng.random() < 0.07:
            self._reopen(w, agent, skill, hit_chance)

    def _survey(self, w: _Writer, agent: Participant) -> Participant:
        """The agent hands over to the survey bot, which asks and gets an answer."""
        w.unassigned(agent, tracker_pb2.SEGMENT_END_REASON_AGENT_TRANSFER)
        w.wait(1, 5)
        survey = self.staff.survey_bot
        w.assigned(survey, tracker_pb2.SEGMENT_START_REASON_AGENT_TRANSFER)
        w.wait(1, 3)
        w.message(tracker_pb2.AUTHOR_TYPE_BOT, survey.id)
        w.wait(5, 60)
        w.user_says()
        return survey

    def _reopen(self, w: _Writer, agent: Participant, skill: str, hit_chance: float) -> None:
        """The end user writes again later: the last human agent sometimes resumes, else
        someone takes it from the queue; another dialogue, closed again."""
        rng = self.rng
        w.wait(600, 7200)
        self._open(w, skill)
        w.wait(20, 300)
        if agent.user_type == tracker_pb2.USER_TYPE_HUMAN and rng.random() < 0.5:
            w.assigned(agent, tracker_pb2.SEGMENT_START_REASON_RESUME)
        else:
            agent = self._agent(skill)
            w.assigned(agent, tracker_pb2.SEGMENT_START_REASON_TAKEN_FROM_QUEUE)
        self._dialogue(w, agent, rng.randrange(1, 4), hit_chance)
        w.wait(5, 120)
        w.closed()

    def _after(self, w: _Writer, session: Session, hit_chance: float) -> Session:
        """Page views after the chat: minutes to hours later, inside or outside periods."""
        for _ in range(self.rng.choice((0, 0, 1, 1, 2, 3))):
            w.wait(60, 4 * 3600)
            w.page_view(in_conversation=False, hit_chance=hit_chance)
        return session


def generate(
    seed: int, events: int, start: dt.datetime, *, duration: dt.timedelta = dt.timedelta(hours=8)
) -> Traffic:
    """``events`` events (exactly) from sessions arriving over ``duration`` after ``start``.

    Sessions are generated until there are a quarter more events than asked, then the
    earliest ``events`` are kept: the stream is a window of traffic, so conversations near
    its end are cut short, as a real stream at any moment would have them."""
    if events < 1:
        raise ValueError("events must be at least 1")
    gen = TrafficGenerator(seed, start)
    wanted = int(events * 1.25) + 50
    expected_sessions = max(1, wanted // 30)
    gap_ms = duration.total_seconds() * 1000 / expected_sessions
    sessions: list[Session] = []
    total = 0
    arrival = float(gen.start_ms)
    while total < wanted:
        arrival += gen.rng.expovariate(1.0) * gap_ms  # Poisson arrivals
        session = gen.session(len(sessions), int(arrival))
        sessions.append(session)
        total += len(session.events)
    timeline = sorted(
        (item for s in sessions for item in s.events), key=lambda item: (item[0], item[1])
    )[:events]
    kept = {id(item[2]) for item in timeline}
    for s in sessions:
        s.events = [item for item in s.events if id(item[2]) in kept]
    sessions = [s for s in sessions if s.events]
    return Traffic([item[2] for item in timeline], sessions)
