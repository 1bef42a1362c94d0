// The reports page: GetReport's range, offset, filters and grouping; charts where people
// would rather look than read (a trend over days, weeks, weekdays or hours; per-agent,
// group, skill or goal bars; always the weekday × hour heat map), the table below them with
// the totals (the "All" counting rule, docs/rules.md §4), and a CSV of exactly that table.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";

import { create } from "@bufbuild/protobuf";
import type { MessageInitShape } from "@bufbuild/protobuf";

import type { Money } from "../../src/gen/goals/v1/common_pb.js";
import { GetReportRequestSchema, ReportGrouping } from "../../src/gen/goals/v1/tracker_pb.js";
import type {
  GetReportRequest, GetReportResponse, ReportMetrics, ReportRow,
} from "../../src/gen/goals/v1/tracker_pb.js";
import { formatMoney } from "../../embed/format.js";
import type { Problem } from "../api.js";
import { useApp } from "../app.js";
import {
  METRICS, barsOption, heatCells, heatmapOption, timeline, trendOption,
} from "../charts.js";
import type { MetricId } from "../charts.js";
import { csvOf, downloadCsv } from "../csv.js";
import type { Route } from "../router.js";
import { Chart } from "../ui/chart.js";
import { ProblemBanner, fieldMessage } from "../ui/problem.js";

const GROUPINGS: readonly { value: ReportGrouping; title: string; column: string }[] = [
  { value: ReportGrouping.DAY, title: "Day", column: "Day" },
  { value: ReportGrouping.WEEK, title: "Week (from Sunday)", column: "Week starting" },
  { value: ReportGrouping.HOUR, title: "Hour of the day", column: "Hour" },
  { value: ReportGrouping.DAY_OF_WEEK, title: "Day of the week", column: "Day of the week" },
  { value: ReportGrouping.DAY_OF_WEEK_HOUR, title: "Day of the week and hour",
    column: "Day of the week and hour" },
  { value: ReportGrouping.AGENT, title: "Agent", column: "Agent" },
  { value: ReportGrouping.GROUP, title: "Agent group", column: "Agent group" },
  { value: ReportGrouping.SKILL, title: "Skill", column: "Skill" },
  { value: ReportGrouping.GOAL, title: "Goal", column: "Goal" },
];

/** Groupings drawn as a trend over time (and the step of their time line); the others as
 * bars per agent, group, skill or goal. */
const OVER_TIME = new Map<ReportGrouping, "day" | "week" | "hour" | "weekday">([
  [ReportGrouping.DAY, "day"], [ReportGrouping.WEEK, "week"], [ReportGrouping.HOUR, "hour"],
  [ReportGrouping.DAY_OF_WEEK, "weekday"],
]);

const DEFAULT_DAYS = 30;
const MIN_OFFSET = -720;
const MAX_OFFSET = 840;
const TOTALS_LABEL = "Total (each conversion once)";
const TOTALS_RULE =
  "Totals count each conversion once and its value once (the \"All\" rule): a conversion " +
  "credited to several agents, or to agents of several groups, counts in each of their " +
  "rows, so the rows can add up to more than the total.";

/** The fields GetReport's messages may name, each shown beside its control. */
const FIELDS = [
  "start_date", "end_date", "utc_offset_minutes", "group_by", "goal_ids", "skills",
  "group_ids", "agent_ids",
] as const;

export function offsetLabel(minutes: number): string {
  const sign = minutes < 0 ? "-" : "+";
  const whole = Math.abs(minutes);
  const hh = String(Math.floor(whole / 60)).padStart(2, "0");
  const mm = String(whole % 60).padStart(2, "0");
  return `UTC${sign}${hh}:${mm}`;
}

function offsetChoices(current: number): number[] {
  const choices: number[] = [];
  for (let minutes = MIN_OFFSET; minutes <= MAX_OFFSET; minutes += 15) {
    choices.push(minutes);
  }
  if (!choices.includes(current)) {
    choices.push(current);
    choices.sort((a, b) => a - b);
  }
  return choices;
}

function isoDay(date: Date): string {
  return date.toISOString().slice(0, 10);
}

/** Today at `offset` minutes from UTC, and the day 29 days before it. */
function defaultRange(offset: number): { start: string; end: string } {
  const today = new Date(Date.now() + offset * 60_000);
  const start = new Date(today.getTime() - (DEFAULT_DAYS - 1) * 86_400_000);
  return { start: isoDay(start), end: isoDay(today) };
}

type DateInit = NonNullable<MessageInitShape<typeof GetReportRequestSchema>["startDate"]>;

/** A `YYYY-MM-DD` input's value as a Date message (unset when empty: the server says so). */
function dateMessage(value: string): DateInit | undefined {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value);
  if (match === null) {
    return undefined;
  }
  return { year: Number(match[1]), month: Number(match[2]), day: Number(match[3]) };
}

function listOf(text: string): string[] {
  return text.split(",").map((entry) => entry.trim()).filter(Boolean);
}

export function showMoney(values: readonly Money[]): string {
  return values.map((money) => formatMoney(money)).join("; ");
}

export function showSeconds(seconds: bigint): string {
  const whole = Number(seconds);
  const h = Math.floor(whole / 3600);
  const m = String(Math.floor((whole % 3600) / 60)).padStart(2, "0");
  const s = String(whole % 60).padStart(2, "0");
  return `${h}:${m}:${s}`;
}

/** A row's (or the totals') cells as the table shows them, in METRICS order. */
function metricCells(metrics: ReportMetrics | undefined): string[] {
  if (metrics === undefined) {
    return ["0", "", "", "0", "0", "0:00:00"];
  }
  return [
    String(metrics.conversions), showMoney(metrics.transactionValues),
    showMoney(metrics.leadValues), String(metrics.agentMessages),
    String(metrics.agentResponses), showSeconds(metrics.timeAssignedSeconds),
  ];
}

const HEADERS = [...METRICS.map((metric) => (metric.id === "assigned"
  ? "Time assigned (h:mm:ss)" : metric.title))];

interface Shown {
  request: { start: string; end: string; offset: number; grouping: ReportGrouping };
  report: GetReportResponse;
  heat: GetReportResponse | null;
}

interface Form {
  start: string;
  end: string;
  offset: number;
  grouping: ReportGrouping;
  goals: string[];
  skills: string;
  groups: string;
  agents: string;
}

function requestOf(form: Form, grouping: ReportGrouping): GetReportRequest {
  return create(GetReportRequestSchema, {
    startDate: dateMessage(form.start),
    endDate: dateMessage(form.end),
    utcOffsetMinutes: form.offset,
    groupBy: grouping,
    goalIds: form.goals,
    skills: listOf(form.skills),
    groupIds: listOf(form.groups),
    agentIds: listOf(form.agents),
  });
}

function FieldError({ problem, field, id }: { problem: Problem | null; field: string; id: string }) {
  const message = fieldMessage(problem, field);
  return message === null ? null : <p class="field-error" id={id} role="alert">{message}</p>;
}

interface GoalChoice {
  id: string;
  name: string;
}

/** The account's goals for the goal filter, or why they could not be listed. */
function useGoals(): { goals: GoalChoice[]; trouble: string | null } {
  const { api, fail } = useApp();
  const [goals, setGoals] = useState<GoalChoice[]>([]);
  const [trouble, setTrouble] = useState<string | null>(null);
  useEffect(() => {
    let live = true;
    (async () => {
      const found: GoalChoice[] = [];
      let pageToken = "";
      do {
        const page = await api.config.listGoals({ pageSize: 200, pageToken });
        for (const summary of page.goals) {
          if (summary.goal) {
            found.push({ id: summary.goal.id, name: summary.goal.name });
          }
        }
        pageToken = page.nextPageToken;
      } while (pageToken && live);
      if (live) {
        setGoals(found);
      }
    })().catch((err: unknown) => {
      // The report still works without the goal list (no goal filter to offer).
      if (live) {
        setTrouble(`The goals could not be listed: ${fail(err).message}`);
      }
    });
    return () => { live = false; };
  }, [api, fail]);
  return { goals, trouble };
}

function Controls({ form, setForm, chosen, setChosen, problem, busy, onSubmit, goals }: {
  form: Form;
  setForm(update: Partial<Form>): void;
  chosen: MetricId[];
  setChosen(chosen: MetricId[]): void;
  problem: Problem | null;
  busy: boolean;
  onSubmit(): void;
  goals: { goals: GoalChoice[]; trouble: string | null };
}) {
  const invalid = (field: string) => (fieldMessage(problem, field) === null ? undefined : "true");
  const described = (field: string, hint?: string) => {
    const ids = [hint, fieldMessage(problem, field) === null ? undefined : `${field}-error`];
    return ids.filter(Boolean).join(" ") || undefined;
  };
  const text = (field: "skills" | "groups" | "agents", name: string, label: string) => (
    <div class="field">
      <label for={`report-${field}`}>{label}</label>
      <input id={`report-${field}`} value={form[field]} placeholder="all"
        aria-invalid={invalid(name)} aria-describedby={described(name)}
        onInput={(e) => setForm({ [field]: e.currentTarget.value })} />
      <FieldError problem={problem} field={name} id={`${name}-error`} />
    </div>
  );
  return (
    <form class="report-controls card" aria-label="Report settings"
      onSubmit={(e) => { e.preventDefault(); onSubmit(); }}>
      <div class="toolbar">
        <div class="field">
          <label for="report-start">From</label>
          <input id="report-start" type="date" value={form.start} required
            aria-invalid={invalid("start_date")} aria-describedby={described("start_date")}
            onInput={(e) => setForm({ start: e.currentTarget.value })} />
          <FieldError problem={problem} field="start_date" id="start_date-error" />
        </div>
        <div class="field">
          <label for="report-end">To</label>
          <input id="report-end" type="date" value={form.end} required
            aria-invalid={invalid("end_date")} aria-describedby={described("end_date")}
            onInput={(e) => setForm({ end: e.currentTarget.value })} />
          <FieldError problem={problem} field="end_date" id="end_date-error" />
        </div>
        <div class="field">
          <label for="report-offset">UTC offset</label>
          <select id="report-offset" value={String(form.offset)}
            aria-invalid={invalid("utc_offset_minutes")}
            aria-describedby={described("utc_offset_minutes")}
            onChange={(e) => setForm({ offset: Number(e.currentTarget.value) })}>
            {offsetChoices(form.offset).map((minutes) => (
              <option value={String(minutes)}>{offsetLabel(minutes)}</option>
            ))}
          </select>
          <FieldError problem={problem} field="utc_offset_minutes" id="utc_offset_minutes-error" />
        </div>
        <div class="field">
          <label for="report-grouping">Group rows by</label>
          <select id="report-grouping" value={String(form.grouping)}
            aria-invalid={invalid("group_by")} aria-describedby={described("group_by")}
            onChange={(e) => setForm({ grouping: Number(e.currentTarget.value) })}>
            {GROUPINGS.map((g) => <option value={String(g.value)}>{g.title}</option>)}
          </select>
          <FieldError problem={problem} field="group_by" id="group_by-error" />
        </div>
      </div>
      <div class="toolbar">
        <div class="field">
          <label for="report-goals">Goals</label>
          <select id="report-goals" multiple size={Math.min(4, Math.max(2, goals.goals.length))}
            aria-invalid={invalid("goal_ids")} aria-describedby={described("goal_ids", "report-goals-hint")}
            onChange={(e) => setForm({
              goals: [...e.currentTarget.selectedOptions].map((option) => option.value),
            })}>
            {goals.goals.map((goal) => (
              <option value={goal.id} selected={form.goals.includes(goal.id)}>{goal.name}</option>
            ))}
          </select>
          <p class="hint" id="report-goals-hint">
            {goals.trouble ?? "None selected: all goals."}
          </p>
          <FieldError problem={problem} field="goal_ids" id="goal_ids-error" />
        </div>
        {text("skills", "skills", "Skills (comma-separated)")}
        {text("groups", "group_ids", "Agent group ids (comma-separated)")}
        {text("agents", "agent_ids", "Agent ids (comma-separated)")}
      </div>
      <fieldset class="metric-choice">
        <legend>Metrics to chart</legend>
        {METRICS.map((metric) => (
          <label class="check" for={`metric-${metric.id}`}>
            <input type="checkbox" id={`metric-${metric.id}`} checked={chosen.includes(metric.id)}
              onChange={(e) => setChosen(e.currentTarget.checked
                ? METRICS.map((m) => m.id).filter((id) => id === metric.id || chosen.includes(id))
                : chosen.filter((id) => id !== metric.id))} />
            {metric.title}
          </label>
        ))}
      </fieldset>
      <button type="submit" disabled={busy}>{busy ? "Loading…" : "Show report"}</button>
    </form>
  );
}

function groupingOf(value: ReportGrouping) {
  return GROUPINGS.find((g) => g.value === value) ?? GROUPINGS[0];
}

function rangeWords(shown: Shown): string {
  const { start, end, offset } = shown.request;
  return `${start} to ${end} (${offsetLabel(offset)})`;
}

function Charts({ shown, chosen }: { shown: Shown; chosen: MetricId[] }) {
  const { report, heat, request } = shown;
  const grouping = groupingOf(request.grouping);
  const metricWords = METRICS.filter((m) => chosen.includes(m.id))
    .map((m) => m.title.toLowerCase()).join(", ") || "no metric chosen";
  const main = useMemo(() => {
    if (request.grouping === ReportGrouping.DAY_OF_WEEK_HOUR) {
      return null;
    }
    const step = OVER_TIME.get(request.grouping);
    return step === undefined
      ? barsOption(report.rows, chosen)
      : trendOption(timeline(report.rows, step, request.start, request.end), chosen);
  }, [report, chosen, request]);
  const heatRows = heat?.rows ?? [];
  const heatOption = useMemo(() => heatmapOption(heatRows), [heat]);
  const busiest = Math.max(0, ...heatCells(heatRows).map((cell) => cell[2]));
  const overTime = OVER_TIME.has(request.grouping);
  return (
    <div class="charts">
      {main !== null && (
        <figure class="card chart-card">
          <figcaption>{grouping.title}: {metricWords}</figcaption>
          <Chart option={main} testId={overTime ? "chart-trend" : "chart-bars"}
            label={`${overTime ? "Trend" : "Bar chart"} of ${metricWords} by ` +
              `${grouping.title.toLowerCase()}, ${rangeWords(shown)}, ` +
              `${report.rows.length} ${report.rows.length === 1 ? "row" : "rows"}; ` +
              "the table below lists the figures."}
            tall={!overTime && report.rows.length > 8} />
        </figure>
      )}
      {heat !== null && (
        <figure class="card chart-card">
          <figcaption>
            Conversions by day of the week and hour (darker is more; the busiest hour had{" "}
            {busiest})
          </figcaption>
          <Chart option={heatOption} testId="chart-heatmap"
            label={`Heat map of conversions by day of the week (rows, Sunday first) and hour ` +
              `(columns, 00 to 23), ${rangeWords(shown)}; darker cells had more ` +
              `conversions, the busiest ${busiest}.`} />
        </figure>
      )}
    </div>
  );
}

function tableRows(shown: Shown): { header: string[]; body: string[][]; totals: string[] } {
  const header = [groupingOf(shown.request.grouping).column, ...HEADERS];
  const body = shown.report.rows.map((row: ReportRow) => [row.label, ...metricCells(row.metrics)]);
  return { header, body, totals: [TOTALS_LABEL, ...metricCells(shown.report.totals)] };
}

function ReportTable({ shown }: { shown: Shown }) {
  const { header, body, totals } = tableRows(shown);
  const download = () => {
    const { start, end } = shown.request;
    const name = groupingOf(shown.request.grouping).column.toLowerCase().replace(/\W+/g, "-");
    downloadCsv(`goalflow-report-${name}-${start}-to-${end}.csv`, csvOf([header, ...body, totals]));
  };
  return (
    <section aria-labelledby="report-table-title">
      <div class="report-table-head">
        <h2 id="report-table-title">Figures, {rangeWords(shown)}</h2>
        <button type="button" class="secondary" onClick={download}>Download CSV</button>
      </div>
      <div class="table-wrap">
        <table>
          <thead>
            <tr>{header.map((title, i) => <th scope="col" class={i > 0 ? "num" : undefined}>{title}</th>)}</tr>
          </thead>
          <tbody>
            {body.map((cells) => (
              <tr>{cells.map((cell, i) => (i === 0
                ? <th scope="row">{cell}</th>
                : <td class="num">{cell}</td>))}</tr>
            ))}
          </tbody>
          <tfoot>
            <tr data-testid="report-totals" class="totals" aria-describedby="report-totals-rule">
              {totals.map((cell, i) => (i === 0
                ? <th scope="row">{cell}</th>
                : <td class="num">{cell}</td>))}
            </tr>
          </tfoot>
        </table>
      </div>
      <p class="hint" id="report-totals-rule">{TOTALS_RULE}</p>
    </section>
  );
}

export function ReportsPage(_props: { route: Route }) {
  const { api, fail } = useApp();
  const goals = useGoals();
  const [form, setFormState] = useState<Form>(() => {
    const offset = -new Date().getTimezoneOffset();
    return { ...defaultRange(offset), offset, grouping: ReportGrouping.DAY, goals: [],
      skills: "", groups: "", agents: "" };
  });
  const [chosen, setChosen] = useState<MetricId[]>(["conversions", "transaction"]);
  const [shown, setShown] = useState<Shown | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);
  const asked = useRef(0);
  const setForm = (update: Partial<Form>) => setFormState((old) => ({ ...old, ...update }));

  const load = async (wanted: Form) => {
    const call = ++asked.current;
    setBusy(true);
    setProblem(null);
    try {
      const both = wanted.grouping === ReportGrouping.DAY_OF_WEEK_HOUR;
      const [report, heat] = await Promise.all([
        api.tracker.getReport(requestOf(wanted, wanted.grouping)),
        both ? null : api.tracker.getReport(requestOf(wanted, ReportGrouping.DAY_OF_WEEK_HOUR)),
      ]);
      if (call === asked.current) {
        setShown({
          request: { start: wanted.start, end: wanted.end, offset: wanted.offset,
            grouping: wanted.grouping },
          report, heat: heat ?? report,
        });
      }
    } catch (err: unknown) {
      if (call === asked.current) {
        setProblem(fail(err));
      }
    } finally {
      if (call === asked.current) {
        setBusy(false);
      }
    }
  };
  useEffect(() => {
    void load(form);
    return () => { asked.current += 1; };  // an answer after leaving the page is dropped
  }, []);

  const besideField = problem !== null && FIELDS.some((field) => fieldMessage(problem, field));
  const empty = shown !== null && shown.report.rows.length === 0;
  return (
    <section class="reports" aria-labelledby="reports-title">
      <h1 id="reports-title">Reports</h1>
      <Controls form={form} setForm={setForm} chosen={chosen} setChosen={setChosen}
        problem={problem} busy={busy} onSubmit={() => void load(form)} goals={goals} />
      {!besideField && <ProblemBanner problem={problem} onRetry={() => void load(form)} />}
      <div aria-live="polite" aria-busy={busy ? "true" : "false"}>
        {shown === null && busy && <p class="hint">Loading the report…</p>}
        {empty && <p class="notice report-empty">No conversions in this range.</p>}
        {shown !== null && !empty && (
          <>
            <Charts shown={shown} chosen={chosen} />
            <ReportTable shown={shown} />
          </>
        )}
      </div>
    </section>
  );
}
