// The reports page's charts: ECharts with the SVG renderer and only the parts it draws
// (tree-shaken imports), and the options built from GetReport's rows. Pure functions of the
// report but for `mountChart`, which owns one ECharts instance in one container.
import { BarChart, HeatmapChart, LineChart } from "echarts/charts";
import type { BarSeriesOption, HeatmapSeriesOption, LineSeriesOption } from "echarts/charts";
import {
  GridComponent, LegendComponent, TooltipComponent, VisualMapComponent,
} from "echarts/components";
import type {
  GridComponentOption, LegendComponentOption, TooltipComponentOption,
  VisualMapComponentOption,
} from "echarts/components";
import { init, use } from "echarts/core";
import type { ComposeOption } from "echarts/core";
import { SVGRenderer } from "echarts/renderers";

import type { Money } from "../src/gen/goals/v1/common_pb.js";
import type { ReportMetrics, ReportRow } from "../src/gen/goals/v1/tracker_pb.js";

use([BarChart, LineChart, HeatmapChart, GridComponent, LegendComponent, TooltipComponent,
  VisualMapComponent, SVGRenderer]);

export type ChartOption = ComposeOption<
  BarSeriesOption | LineSeriesOption | HeatmapSeriesOption | GridComponentOption
  | LegendComponentOption | TooltipComponentOption | VisualMapComponentOption
>;

/** The metrics a person can chart, in the table's order. */
export type MetricId =
  | "conversions" | "transaction" | "lead" | "messages" | "responses" | "assigned";

export interface MetricSpec {
  id: MetricId;
  title: string;
  /** What it measures: a count, money (a chart per currency), hours. */
  unit: "count" | "value" | "hours";
}

export const METRICS: readonly MetricSpec[] = [
  { id: "conversions", title: "Conversions", unit: "count" },
  { id: "transaction", title: "Transaction value", unit: "value" },
  { id: "lead", title: "Lead value", unit: "value" },
  { id: "messages", title: "Agent messages", unit: "count" },
  { id: "responses", title: "Agent responses", unit: "count" },
  { id: "assigned", title: "Time assigned", unit: "hours" },
];

export const WEEKDAYS = [
  "Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
] as const;

function moneyOf(metrics: ReportMetrics | undefined, id: MetricId): Money[] {
  if (metrics === undefined) {
    return [];
  }
  return id === "transaction" ? metrics.transactionValues : metrics.leadValues;
}

function countOf(metrics: ReportMetrics | undefined, id: MetricId): number {
  if (metrics === undefined) {
    return 0;
  }
  switch (id) {
    case "conversions": return Number(metrics.conversions);
    case "messages": return Number(metrics.agentMessages);
    case "responses": return Number(metrics.agentResponses);
    case "assigned": return Math.round(Number(metrics.timeAssignedSeconds) / 36) / 100;
    default: return 0;
  }
}

/** What a chart draws of a row: its label, the id behind it where the grouping's key is
 * one (agent, group, goal), and its figures (none: a gap filled with zeros). */
export interface Point {
  label: string;
  id?: string;
  metrics?: ReportMetrics | undefined;
}

const DAY_MS = 86_400_000;

function dayMs(iso: string): number {
  const [year, month, day] = iso.split("-").map(Number);
  return Date.UTC(year, month - 1, day);
}

function isoOf(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** Every step of a time grouping over the range, with the report's rows where it has them
 * and zeros between (a trend shows the quiet days too). `unit` is "day", "week", "hour"
 * or "weekday"; `start` and `end` are the request's ISO dates. */
export function timeline(rows: readonly ReportRow[], unit: "day" | "week" | "hour" | "weekday",
                         start: string, end: string): Point[] {
  const byKey = new Map(rows.map((row) => [row.key, row.metrics]));
  const steps: { key: string; label: string }[] = [];
  if (unit === "hour") {
    HOURS.forEach((hh, h) => steps.push({ key: String(h), label: `${hh}:00` }));
  } else if (unit === "weekday") {
    WEEKDAYS.forEach((name, d) => steps.push({ key: String(d), label: name }));
  } else {
    const first = dayMs(start);
    const last = dayMs(end);
    const from = unit === "week" ? first - new Date(first).getUTCDay() * DAY_MS : first;
    for (let at = from; at <= last && steps.length <= 400; at += unit === "week" ? 7 * DAY_MS : DAY_MS) {
      steps.push({ key: isoOf(at), label: isoOf(at) });
    }
  }
  const known = new Set(steps.map((step) => step.key));
  const points = steps.map((step) => ({ label: step.label, metrics: byKey.get(step.key) }));
  // A row the steps missed (it should not happen) is still drawn, after the others.
  for (const row of rows) {
    if (!known.has(row.key)) {
      points.push({ label: row.label, metrics: row.metrics });
    }
  }
  return points;
}

interface Series {
  name: string;
  metric: MetricId;
  values: number[];
}

function currenciesOf(rows: readonly Point[], id: MetricId): string[] {
  return [...new Set(rows.flatMap(
    (row) => moneyOf(row.metrics, id).map((money) => money.currencyCode)))].sort();
}

function amountsOf(rows: readonly Point[], id: MetricId, currency: string): number[] {
  return rows.map((row) => {
    const money = moneyOf(row.metrics, id).find((m) => m.currencyCode === currency);
    return money ? Number(money.amount) : 0;
  });
}

/** One chart of a report: chosen metrics that share one unit, drawn on one axis. Counts,
 * hours and each currency get charts of their own, so that no axis mixes them: a EUR line
 * is never flattened under a USD scale, and bars of different meaning are never set side
 * by side at different scales. */
export interface ChartPart {
  /** "count", "hours" or "money-<currency>": stable, for the container's test id. */
  key: string;
  /** What its axis measures: "count", "hours" or a currency code. */
  axis: string;
  /** The metrics it draws, in words, for its caption ("transaction value, lead value in USD"). */
  words: string;
  series: Series[];
}

function wordsOf(specs: readonly MetricSpec[]): string {
  return specs.map((spec) => spec.title.toLowerCase()).join(", ");
}

/** The charts the chosen metrics need over `rows`: one of the counts, one per currency of
 * the money metrics (transaction and lead value of a currency together), one of the time
 * assigned; in that order, and none for a money metric without any value. */
export function chartParts(rows: readonly Point[], chosen: readonly MetricId[]): ChartPart[] {
  const specs = METRICS.filter((metric) => chosen.includes(metric.id));
  const parts: ChartPart[] = [];
  const counts = specs.filter((spec) => spec.unit === "count");
  if (counts.length > 0) {
    parts.push({ key: "count", axis: "count", words: wordsOf(counts), series: counts.map(
      (spec) => ({ name: spec.title, metric: spec.id,
        values: rows.map((row) => countOf(row.metrics, spec.id)) })) });
  }
  const money = specs.filter((spec) => spec.unit === "value");
  const currencies = [...new Set(money.flatMap((spec) => currenciesOf(rows, spec.id)))].sort();
  for (const currency of currencies) {
    const having = money.filter((spec) => currenciesOf(rows, spec.id).includes(currency));
    parts.push({ key: `money-${currency}`, axis: currency,
      words: `${wordsOf(having)} in ${currency}`, series: having.map((spec) => ({
        name: `${spec.title} ${currency}`, metric: spec.id,
        values: amountsOf(rows, spec.id, currency) })) });
  }
  for (const spec of specs.filter((one) => one.unit === "hours")) {
    parts.push({ key: "hours", axis: "hours", words: `${spec.title.toLowerCase()} in hours`,
      series: [{ name: `${spec.title} (h)`, metric: spec.id,
        values: rows.map((row) => countOf(row.metrics, spec.id)) }] });
  }
  return parts;
}

/** The chosen money metrics with no value in `rows` (so without a chart). */
export function moneyWithoutValues(rows: readonly Point[],
                                   chosen: readonly MetricId[]): MetricSpec[] {
  return METRICS.filter((metric) => metric.unit === "value" && chosen.includes(metric.id)
    && currenciesOf(rows, metric.id).length === 0);
}

/** At most this many bars per chart; the table lists every row. */
export const MOST_BARS = 20;

/** The rows a bar chart draws: all of them when there are at most MOST_BARS, else the
 * MOST_BARS largest by the first chosen metric (in METRICS order; of a money metric, its
 * first currency by code), ties in the report's order, largest first. `by` names that
 * figure ("conversions", "transaction value USD"). */
export function topPoints(rows: readonly Point[], chosen: readonly MetricId[]):
    { points: Point[]; by: string } {
  const first = METRICS.filter((metric) => chosen.includes(metric.id)).map((spec) => {
    if (spec.unit !== "value") {
      return { by: spec.title.toLowerCase(), values: rows.map((row) => countOf(row.metrics, spec.id)) };
    }
    const currency = currenciesOf(rows, spec.id)[0];
    return currency === undefined ? null : { by: `${spec.title.toLowerCase()} ${currency}`,
      values: amountsOf(rows, spec.id, currency) };
  }).find((found) => found !== null);
  if (rows.length <= MOST_BARS || first == null) {
    return { points: rows.slice(0, MOST_BARS), by: first?.by ?? "" };
  }
  const order = rows.map((_, i) => i).sort((a, b) => first.values[b] - first.values[a] || a - b);
  return { points: order.slice(0, MOST_BARS).map((i) => rows[i]), by: first.by };
}

/** A point's full name: its label, and its id in brackets where the id says more. */
export function fullName(point: Point): string {
  return point.id && point.id !== point.label ? `${point.label} (${point.id})` : point.label;
}

function twoLines(rows: readonly Point[]): boolean {
  return rows.some((row) => Boolean(row.id) && row.id !== row.label);
}

const PALETTE = ["#2f5bd3", "#e07b00", "#1e7a3c", "#9c27b0", "#b3261e", "#00838f", "#6d4c41"];

/** A metric keeps its colour in every chart. */
function colorsOf(part: ChartPart): string[] {
  return part.series.map((s) => PALETTE[METRICS.findIndex((metric) => metric.id === s.metric)]);
}

function valueAxis(part: ChartPart) {
  return { type: "value" as const, name: part.axis, minInterval: part.axis === "count" ? 1 : 0 };
}

/** One part of a report over days, weeks, weekdays or hours: counts as bars, money and
 * time as lines. */
export function trendOption(rows: readonly Point[], part: ChartPart): ChartOption {
  const bars = part.axis === "count";
  return {
    color: colorsOf(part),
    animation: false,
    tooltip: { trigger: "axis" },
    legend: { type: "scroll", top: 0 },
    grid: { left: 8, right: 24, top: 48, bottom: 8, containLabel: true },
    xAxis: { type: "category", data: rows.map((row) => row.label) },
    yAxis: valueAxis(part),
    series: part.series.map((s): BarSeriesOption | LineSeriesOption => (bars
      ? { type: "bar", name: s.name, data: s.values }
      : { type: "line", name: s.name, data: s.values, symbolSize: 7 })),
  };
}

/** The height in pixels of a bar chart of `rows`: room for each row's name (and id below
 * it) and its bars, the legend and the axis. */
export function barsHeight(rows: readonly Point[], part: ChartPart): number {
  const perRow = Math.max(twoLines(rows) ? 38 : 24, 8 * part.series.length + 10);
  return Math.max(220, 96 + perRow * rows.length);
}

/** One part of a per-agent, per-group, per-skill or per-goal report as bars, one per
 * series, laid sideways so that long names stay readable; a row's id is drawn under its
 * name, and both are in the tooltip whole. */
export function barsOption(rows: readonly Point[], part: ChartPart): ChartOption {
  return {
    color: colorsOf(part),
    animation: false,
    tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
    legend: { type: "scroll", top: 0 },
    grid: { left: 8, right: 24, top: 40, bottom: 40, containLabel: true },
    yAxis: { type: "category", data: rows.map(fullName), inverse: true,
      axisLabel: {
        width: 150, overflow: "truncate", lineHeight: 15,
        formatter: (_value: string, index: number) => {
          const row = rows[index];
          if (row === undefined) {
            return "";
          }
          return row.id && row.id !== row.label ? `${row.label}\n${row.id}` : row.label;
        },
      } },
    xAxis: { ...valueAxis(part), nameLocation: "middle", nameGap: 26 },
    series: part.series.map((s): BarSeriesOption => ({ type: "bar", name: s.name, data: s.values })),
  };
}

export const HOURS = Array.from({ length: 24 }, (_, h) => String(h).padStart(2, "0"));

/** The cells [hour, weekday, conversions] of a DAY_OF_WEEK_HOUR report ("1-13": Monday 13:00). */
export function heatCells(rows: readonly ReportRow[]): [number, number, number][] {
  const cells: [number, number, number][] = [];
  for (const row of rows) {
    const [day, hour] = row.key.split("-").map(Number);
    if (Number.isInteger(day) && Number.isInteger(hour)) {
      cells.push([hour, day, countOf(row.metrics, "conversions")]);
    }
  }
  return cells;
}

/** The weekday × hour heat map of conversions (7 × 24 cells; empty cells stay blank). */
export function heatmapOption(rows: readonly ReportRow[]): ChartOption {
  const cells = heatCells(rows);
  const most = Math.max(1, ...cells.map((cell) => cell[2]));
  return {
    animation: false,
    tooltip: {
      formatter: (params) => {
        const one = Array.isArray(params) ? params[0] : params;
        const [hour, day, count] = one.value as [number, number, number];
        return `${WEEKDAYS[day]} ${HOURS[hour]}:00 — ${count} conversion${count === 1 ? "" : "s"}`;
      },
    },
    grid: { left: 8, right: 16, top: 8, bottom: 8, containLabel: true },
    xAxis: { type: "category", data: HOURS, splitArea: { show: false } },
    yAxis: { type: "category", data: [...WEEKDAYS], inverse: true,
      axisLabel: { formatter: (day: string) => day.slice(0, 3) } },
    // The scale is told in words beside the chart; a drawn one would be shapes without data.
    visualMap: { show: false, min: 0, max: most, inRange: { color: ["#dbe6fb", "#1d3f9a"] } },
    series: [{ type: "heatmap", name: "Conversions", data: cells,
      itemStyle: { borderColor: "#fff", borderWidth: 1 } }],
  };
}

/** Draws `option` into `element` and keeps it sized to it; call the result to dispose. */
export function mountChart(element: HTMLElement): {
  show(option: ChartOption): void;
  dispose(): void;
} {
  const chart = init(element, undefined, { renderer: "svg" });
  let frame = 0;
  const observer = new ResizeObserver(() => {
    cancelAnimationFrame(frame);
    frame = requestAnimationFrame(() => chart.resize());
  });
  observer.observe(element);
  return {
    show(option: ChartOption) {
      chart.setOption(option, { notMerge: true });
    },
    dispose() {
      cancelAnimationFrame(frame);
      observer.disconnect();
      chart.dispose();
    },
  };
}
