// The reports page: GetReport's range, offset, filters and grouping; charts where people
// would rather look than read (a trend over days, weeks, weekdays or hours; per-agent,
// group, skill or goal bars, the 20 largest when there are more; counts, hours and each
// currency in charts of their own; always the weekday × hour heat map, fetched again only
// when what it depends on changed), the table below them with the totals (the "All"
// counting rule, docs/rules.md §4) and the ids behind agent, group and goal names, and a
// CSV of that table (money in a column per currency, plain amounts a spreadsheet can sum).
import { useEffect, useMemo, useRef, useState } from "preact/hooks";

import { create } from "@bufbuild/protobuf";
import type { MessageInitShape } from "@bufbuild/protobuf";

import { toJsonString } from "@bufbuild/protobuf";

import type { Money } from "../../src/gen/goals/v1/common_pb.js";
import { GetReportRequestSchema, ReportGrouping } from "../../src/gen/goals/v1/tracker_pb.js";
import type {
  GetReportRequest, GetReportResponse, ReportMetrics, ReportRow,
} from "../../src/gen/goals/v1/tracker_pb.js";
import { formatMoney } from "../../embed/format.js";
import type { Problem } from "../api.js";
import { useApp } from "../app.js";
import {
  METRICS, barsHeight, barsOption, chartParts, heatCells, heatmapOption,
  moneyWithoutValues, timeline, topPoints, trendOption,
} from "../charts.js";
import type { ChartOption, MetricId, Point } from "../charts.js";
import { csvOf, downloadCsv } from "../csv.js";
import type { Route } from "../router.js";
import { Chart } from "../ui/chart.js";
import { FieldError, ProblemBanner, fieldMessage } from "../ui/problem.js";

interface Grouping {
  value: ReportGrouping;
  title: string;
  /** The table's first column. */
  column: string;
  /** The rows, in words ("65 agents"). */
  plural: string;
  /** Where the row's key is an id (agent, group, goal): the column showing it. */
  idColumn?: string;
}

const GROUPINGS: readonly Grouping[] = [
  { value: ReportGrouping.DAY, title: "Day", column: "Day", plural: "days" },
  { value: ReportGrouping.WEEK, title: "Week (from Sunday)", column: "Week starting",
    plural: "weeks" },
  { value: ReportGrouping.HOUR, title: "Hour of the day", column: "Hour", plural: "hours" },
  { value: ReportGrouping.DAY_OF_WEEK, title: "Day of the week", column: "Day of the week",
    plural: "days of the week" },
  { value: ReportGrouping.DAY_OF_WEEK_HOUR, title: "Day of the week and hour",
    column: "Day of the week and hour", plural: "hours of the week" },
  { value: ReportGrouping.AGENT, title: "Agent", column: "Agent", plural: "agents",
    idColumn: "Agent id" },
  { value: ReportGrouping.GROUP, title: "Agent group", column: "Agent group",
    plural: "agent groups", idColumn: "Group id" },
  { value: ReportGrouping.SKILL, title: "Skill", column: "Skill", plural: "skills" },
  { value: ReportGrouping.GOAL, title: "Goal", column: "Goal", plural: "goals",
    idColumn: "Goal id" },
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

/** The money of one metric: transaction or lead value, per currency. */
function moneyOf(metrics: ReportMetrics | undefined, id: MetricId): Money[] {
  if (metrics === undefined) {
    return [];
  }
  return id === "transaction" ? metrics.transactionValues : metrics.leadValues;
}

/** A metric's cell as the table shows it (money as "12.50 USD; 3.00 EUR"). */
function metricCell(metrics: ReportMetrics | undefined, id: MetricId): string {
  switch (id) {
    case "conversions": return String(metrics?.conversions ?? 0n);
    case "transaction": case "lead": return showMoney(moneyOf(metrics, id));
    case "messages": return String(metrics?.agentMessages ?? 0n);
    case "responses": return String(metrics?.agentResponses ?? 0n);
    case "assigned": return showSeconds(metrics?.timeAssignedSeconds ?? 0n);
    default: return "";
  }
}

/** A row's (or the totals') cells as the table shows them, in METRICS order. */
function metricCells(metrics: ReportMetrics | undefined): string[] {
  return METRICS.map((metric) => metricCell(metrics, metric.id));
}

function metricHeader(id: MetricId, title: string): string {
  return id === "assigned" ? "Time assigned (h:mm:ss)" : title;
}

const HEADERS = METRICS.map((metric) => metricHeader(metric.id, metric.title));

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
      <FieldError id={`${name}-error`} message={fieldMessage(problem, name)} alert />
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
          <FieldError id="start_date-error" message={fieldMessage(problem, "start_date")} alert />
        </div>
        <div class="field">
          <label for="report-end">To</label>
          <input id="report-end" type="date" value={form.end} required
            aria-invalid={invalid("end_date")} aria-describedby={described("end_date")}
            onInput={(e) => setForm({ end: e.currentTarget.value })} />
          <FieldError id="end_date-error" message={fieldMessage(problem, "end_date")} alert />
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
          <FieldError id="utc_offset_minutes-error" message={fieldMessage(problem, "utc_offset_minutes")} alert />
        </div>
        <div class="field">
          <label for="report-grouping">Group rows by</label>
          <select id="report-grouping" value={String(form.grouping)}
            aria-invalid={invalid("group_by")} aria-describedby={described("group_by")}
            onChange={(e) => setForm({ grouping: Number(e.currentTarget.value) })}>
            {GROUPINGS.map((g) => <option value={String(g.value)}>{g.title}</option>)}
          </select>
          <FieldError id="group_by-error" message={fieldMessage(problem, "group_by")} alert />
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
          <FieldError id="goal_ids-error" message={fieldMessage(problem, "goal_ids")} alert />
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

/** A report's rows as chart points; the key is the id behind the label where the grouping
 * has one. */
function pointsOf(shown: Shown): Point[] {
  const withId = groupingOf(shown.request.grouping).idColumn !== undefined;
  return shown.report.rows.map((row) => ({
    label: row.label, id: withId ? row.key : undefined, metrics: row.metrics,
  }));
}

interface Drawn {
  testId: string;
  caption: string;
  /** Beside the chart: which rows it draws when not all. */
  note: string | null;
  label: string;
  option: ChartOption;
  height?: number;
}

/** The charts of the report's grouping: a trend over time, or bars (the MOST_BARS largest
 * rows when there are more), one chart per unit (counts, each currency, hours). */
function mainCharts(shown: Shown, chosen: MetricId[]): { charts: Drawn[]; notes: string[] } {
  const { request, report } = shown;
  if (request.grouping === ReportGrouping.DAY_OF_WEEK_HOUR) {
    return { charts: [], notes: [] };
  }
  const grouping = groupingOf(request.grouping);
  const step = OVER_TIME.get(request.grouping);
  const all = step === undefined
    ? pointsOf(shown) : timeline(report.rows, step, request.start, request.end);
  const top = step === undefined ? topPoints(all, chosen) : { points: all, by: "" };
  const points = top.points;
  const note = points.length < all.length
    ? `Top ${points.length} of ${all.length} ${grouping.plural} by ${top.by}; all are in the ` +
      "table below."
    : null;
  const charts = chartParts(points, chosen).map((part): Drawn => {
    const kind = step === undefined ? "bars" : "trend";
    const rows = note === null
      ? `${points.length} ${points.length === 1 ? "row" : "rows"}`
      : `the top ${points.length} of ${all.length} ${grouping.plural} by ${top.by}`;
    return {
      testId: `chart-${kind}-${part.key}`,
      caption: `${grouping.title}: ${part.words}`,
      note,
      label: `${kind === "trend" ? "Trend" : "Bar chart"} of ${part.words} by ` +
        `${grouping.title.toLowerCase()}, ${rangeWords(shown)}, ${rows}; the table below ` +
        "lists the figures.",
      option: kind === "trend" ? trendOption(points, part) : barsOption(points, part),
      height: kind === "trend" ? undefined : barsHeight(points, part),
    };
  });
  const notes = moneyWithoutValues(all, chosen).map(
    (metric) => `No ${metric.title.toLowerCase()} in this report, so no chart of it.`);
  if (chosen.length === 0) {
    notes.push("No metric is chosen to chart; the table lists them all.");
  }
  return { charts, notes };
}

function Charts({ shown, chosen }: { shown: Shown; chosen: MetricId[] }) {
  const { heat } = shown;
  const main = useMemo(() => mainCharts(shown, chosen), [shown, chosen]);
  const heatRows = heat?.rows ?? [];
  const heatOption = useMemo(() => heatmapOption(heatRows), [heat]);
  const busiest = Math.max(0, ...heatCells(heatRows).map((cell) => cell[2]));
  return (
    <>
      {main.notes.map((note) => <p class="hint chart-missing">{note}</p>)}
      <div class="charts">
        {main.charts.map((chart) => (
          <figure class="card chart-card" key={chart.testId}>
            <figcaption>{chart.caption}</figcaption>
            {chart.note !== null && <p class="hint chart-note">{chart.note}</p>}
            <Chart option={chart.option} testId={chart.testId} label={chart.label}
              height={chart.height} />
          </figure>
        ))}
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
    </>
  );
}

function tableRows(shown: Shown): { header: string[]; body: string[][]; totals: string[] } {
  const { column, idColumn } = groupingOf(shown.request.grouping);
  const ids = idColumn === undefined ? [] : [idColumn];
  const header = [column, ...ids, ...HEADERS];
  const body = shown.report.rows.map((row: ReportRow) => [
    row.label, ...(idColumn === undefined ? [] : [row.key]), ...metricCells(row.metrics),
  ]);
  const totals = [TOTALS_LABEL, ...ids.map(() => ""), ...metricCells(shown.report.totals)];
  return { header, body, totals };
}

/** The CSV of the table: the same rows, but money in a column per metric and currency
 * ("Transaction value USD") holding plain amounts ("12.50"), so that a spreadsheet can sum
 * them; empty where a row has none of that currency. A money metric without any value keeps
 * one empty column under its own name. */
function csvLines(shown: Shown): string[][] {
  const { column, idColumn } = groupingOf(shown.request.grouping);
  const { rows, totals } = shown.report;
  const everyMetrics = [...rows.map((row) => row.metrics), totals];
  const columns = METRICS.flatMap((metric) => {
    if (metric.unit !== "value") {
      return [{ title: metricHeader(metric.id, metric.title),
        cell: (m: ReportMetrics | undefined) => metricCell(m, metric.id) }];
    }
    const currencies = [...new Set(everyMetrics.flatMap(
      (m) => moneyOf(m, metric.id).map((money) => money.currencyCode)))].sort();
    if (currencies.length === 0) {
      return [{ title: metric.title, cell: () => "" }];
    }
    return currencies.map((currency) => ({
      title: `${metric.title} ${currency}`,
      cell: (m: ReportMetrics | undefined) =>
        moneyOf(m, metric.id).find((money) => money.currencyCode === currency)?.amount ?? "",
    }));
  });
  const line = (label: string, id: string, metrics: ReportMetrics | undefined) => [
    label, ...(idColumn === undefined ? [] : [id]), ...columns.map((c) => c.cell(metrics)),
  ];
  return [
    [column, ...(idColumn === undefined ? [] : [idColumn]), ...columns.map((c) => c.title)],
    ...rows.map((row) => line(row.label, row.key, row.metrics)),
    line(TOTALS_LABEL, "", totals),
  ];
}

function ReportTable({ shown }: { shown: Shown }) {
  const { header, body, totals } = tableRows(shown);
  const figuresFrom = groupingOf(shown.request.grouping).idColumn === undefined ? 1 : 2;
  const cell = (text: string, i: number) => {
    if (i === 0) {
      return <th scope="row">{text}</th>;
    }
    return i < figuresFrom ? <td class="report-id">{text}</td> : <td class="num">{text}</td>;
  };
  const download = () => {
    const { start, end } = shown.request;
    const name = groupingOf(shown.request.grouping).column.toLowerCase().replace(/\W+/g, "-");
    downloadCsv(`goalflow-report-${name}-${start}-to-${end}.csv`, csvOf(csvLines(shown)));
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
            <tr>{header.map((title, i) => (
              <th scope="col" class={i >= figuresFrom ? "num" : undefined}>{title}</th>))}</tr>
          </thead>
          <tbody>
            {body.map((cells) => <tr>{cells.map(cell)}</tr>)}
          </tbody>
          <tfoot>
            <tr data-testid="report-totals" class="totals" aria-describedby="report-totals-rule">
              {totals.map(cell)}
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
  // The heat map last fetched and what it was fetched for (the request without its
  // grouping), and the last request shown: a heat map is fetched again only when its range,
  // offset or filters changed, or when the same report is asked for again (a refresh).
  const heatFetched = useRef<{ key: string; heat: GetReportResponse } | null>(null);
  const lastShown = useRef("");
  const setForm = (update: Partial<Form>) => setFormState((old) => ({ ...old, ...update }));

  const load = async (wanted: Form) => {
    const call = ++asked.current;
    setBusy(true);
    setProblem(null);
    try {
      const request = requestOf(wanted, wanted.grouping);
      const heatRequest = requestOf(wanted, ReportGrouping.DAY_OF_WEEK_HOUR);
      const key = toJsonString(GetReportRequestSchema, request);
      const heatKey = toJsonString(GetReportRequestSchema, heatRequest);
      const both = wanted.grouping === ReportGrouping.DAY_OF_WEEK_HOUR;
      const kept = heatFetched.current;
      const reuse = !both && key !== lastShown.current && kept?.key === heatKey
        ? kept.heat : null;
      const [report, heat] = await Promise.all([
        api.tracker.getReport(request),
        both || reuse !== null ? null : api.tracker.getReport(heatRequest),
      ]);
      if (call === asked.current) {
        const heatShown = reuse ?? heat ?? report;
        heatFetched.current = { key: heatKey, heat: heatShown };
        lastShown.current = key;
        setShown({
          request: { start: wanted.start, end: wanted.end, offset: wanted.offset,
            grouping: wanted.grouping },
          report, heat: heatShown,
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
