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
  /** What the chart's axis measures: a count, money (one series per currency), hours. */
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

const UNIT_TITLES = { count: "count", value: "value", hours: "hours" } as const;

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

/** What a chart draws of a row: its label and figures (none: a gap filled with zeros). */
export interface Point {
  label: string;
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
  unit: MetricSpec["unit"];
  values: number[];
}

/** One series per chosen metric, and per currency for the money metrics. */
export function seriesOf(rows: readonly Point[], chosen: readonly MetricId[]): Series[] {
  const found: Series[] = [];
  for (const spec of METRICS.filter((metric) => chosen.includes(metric.id))) {
    if (spec.unit !== "value") {
      const values = rows.map((row) => countOf(row.metrics, spec.id));
      found.push({ name: spec.unit === "hours" ? `${spec.title} (h)` : spec.title,
        unit: spec.unit, values });
      continue;
    }
    const currencies = [...new Set(rows.flatMap(
      (row) => moneyOf(row.metrics, spec.id).map((money) => money.currencyCode)))].sort();
    for (const currency of currencies) {
      const values = rows.map((row) => {
        const money = moneyOf(row.metrics, spec.id).find((m) => m.currencyCode === currency);
        return money ? Number(money.amount) : 0;
      });
      found.push({ name: `${spec.title} ${currency}`, unit: "value", values });
    }
  }
  return found;
}

const PALETTE = ["#2f5bd3", "#e07b00", "#1e7a3c", "#9c27b0", "#b3261e", "#00838f", "#6d4c41"];

/** Units in first-seen order: the first axis on the near side, the others on the far side. */
function unitsOf(series: readonly Series[]): MetricSpec["unit"][] {
  return [...new Set(series.map((s) => s.unit))];
}

function axisOf(unit: MetricSpec["unit"], i: number) {
  return {
    type: "value" as const,
    name: UNIT_TITLES[unit],
    offset: i >= 2 ? 56 * (i - 1) : 0,
    splitLine: { show: i === 0 },
    minInterval: unit === "count" ? 1 : 0,
  };
}

function yAxes(units: readonly MetricSpec["unit"][]) {
  return units.map((unit, i) => ({
    ...axisOf(unit, i), position: i === 0 ? "left" as const : "right" as const,
  }));
}

function xAxes(units: readonly MetricSpec["unit"][]) {
  return units.map((unit, i) => ({
    ...axisOf(unit, i), position: i === 0 ? "bottom" as const : "top" as const,
    nameLocation: "middle" as const, nameGap: 22,
  }));
}

/** Conversions and value over days, weeks, weekdays or hours: counts as bars, value and
 * time as lines, one axis per unit. */
export function trendOption(rows: readonly Point[], chosen: readonly MetricId[]): ChartOption {
  const series = seriesOf(rows, chosen);
  const units = unitsOf(series);
  return {
    color: PALETTE,
    animation: false,
    tooltip: { trigger: "axis" },
    legend: { type: "scroll", top: 0 },
    grid: { left: 56, right: units.length > 1 ? 56 * (units.length - 1) + 8 : 24, top: 48,
      bottom: 36, containLabel: true },
    xAxis: { type: "category", data: rows.map((row) => row.label) },
    yAxis: yAxes(units),
    series: series.map((s): BarSeriesOption | LineSeriesOption => (s.unit === "count"
      ? { type: "bar", name: s.name, data: s.values, yAxisIndex: units.indexOf(s.unit) }
      : { type: "line", name: s.name, data: s.values, yAxisIndex: units.indexOf(s.unit),
        symbolSize: 7 })),
  };
}

/** Per-agent, per-group, per-skill or per-goal bars, one bar per chosen metric (and
 * currency), laid sideways so that long names stay readable. */
export function barsOption(rows: readonly Point[], chosen: readonly MetricId[]): ChartOption {
  const series = seriesOf(rows, chosen);
  const units = unitsOf(series);
  return {
    color: PALETTE,
    animation: false,
    tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
    legend: { type: "scroll", top: 0 },
    grid: { left: 8, right: 24, top: units.length > 1 ? 80 : 40, bottom: 40,
      containLabel: true },
    yAxis: { type: "category", data: rows.map((row) => row.label), inverse: true,
      axisLabel: { width: 140, overflow: "truncate" } },
    xAxis: xAxes(units),
    series: series.map((s): BarSeriesOption => ({
      type: "bar", name: s.name, data: s.values, xAxisIndex: units.indexOf(s.unit),
    })),
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
