// The goals page's data: the list (every page of ListGoals), how a goal reads in words, and
// the form's state with its conversion to and from the generated messages.
import type { Date as DateMessage } from "../../../src/gen/goals/v1/common_pb.js";
import {
  AttributionModel,
  ConditionCategory,
  ConditionOperator,
  GoalStatus,
  GoalType,
} from "../../../src/gen/goals/v1/config_pb.js";
import type {
  CreateGoalRequestSchema,
  Goal,
  GoalSummary,
} from "../../../src/gen/goals/v1/config_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { formatMoney } from "../../../embed/format.js";
import type { Api } from "../../api.js";

/** docs/rules.md §2: active goals per account (ended ones still active included). */
export const MAX_ACTIVE = 15;
/** docs/rules.md §2: conditions per goal. */
export const MAX_CONDITIONS = 100;
const PAGE_SIZE = 200;

export interface GoalList {
  rows: GoalSummary[];
  /** False when the tracker could not answer for at least one page. */
  countsAvailable: boolean;
}

/** Names in the reader's order, numbers by value: "G2" before "G10", "a" beside "A". */
const NAME_ORDER = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

/** `rows` ordered by goal name naturally (then by id, so that equal names keep one order). */
export function byName(rows: readonly GoalSummary[]): GoalSummary[] {
  return [...rows].sort((a, b) => NAME_ORDER.compare(a.goal?.name ?? "", b.goal?.name ?? "")
    || (a.goal?.id ?? "").localeCompare(b.goal?.id ?? ""));
}

/** Every goal of the account (all pages of ListGoals), ordered by name naturally. */
export async function loadAllGoals(api: Api): Promise<GoalList> {
  const rows: GoalSummary[] = [];
  let countsAvailable = true;
  let pageToken = "";
  do {
    const page = await api.config.listGoals({ pageSize: PAGE_SIZE, pageToken });
    rows.push(...page.goals);
    countsAvailable &&= page.sevenDayConversionsAvailable;
    pageToken = page.nextPageToken;
  } while (pageToken);
  return { rows: byName(rows), countsAvailable };
}

export function activeCount(rows: readonly GoalSummary[]): number {
  return rows.filter((row) => row.goal?.active).length;
}

// -- words -------------------------------------------------------------------------------

export const MODELS: readonly [AttributionModel, string][] = [
  [AttributionModel.FIRST_TOUCH, "First touch"],
  [AttributionModel.LAST_TOUCH, "Last touch"],
  [AttributionModel.ALL_TOUCHES, "All touches"],
];

export const GOAL_TYPES: readonly [GoalType, string][] = [
  [GoalType.SELL_PRODUCT_OR_SERVICE, "Sell a product or service"],
  [GoalType.GENERATE_LEADS, "Generate leads"],
  [GoalType.SERVICE_ACTIVITY_COMPLETE, "Service activity complete"],
  [GoalType.OTHER, "Other"],
];

export const OPERATORS: readonly [ConditionOperator, string][] = [
  [ConditionOperator.CONTAINS, "contains"],
  [ConditionOperator.IS, "is"],
];

export function modelText(model: AttributionModel): string {
  return MODELS.find(([value]) => value === model)?.[1] ?? "—";
}

export interface StatusBadge {
  text: string;
  /** The badge's CSS class (console.css: active, ending, scheduled, ended, inactive). */
  tone: string;
}

export function statusBadge(goal: Goal): StatusBadge {
  switch (goal.status) {
    case GoalStatus.ACTIVE:
      return { text: "Active", tone: "active" };
    case GoalStatus.ENDING: {
      // docs/rules.md §2: today counts as 1, so 1 is the last day.
      const days = goal.daysRemaining;
      return { text: days <= 1 ? "Ends today" : `Ending — ${days} days left`, tone: "ending" };
    }
    case GoalStatus.SCHEDULED:
      return { text: "Scheduled", tone: "scheduled" };
    case GoalStatus.ENDED:
      return { text: "Ended", tone: "ended" };
    case GoalStatus.INACTIVE:
      return { text: "Inactive", tone: "inactive" };
    default:
      return { text: "Unknown", tone: "inactive" };
  }
}

/** "YYYY-MM-DD" (what <input type=date> holds), or "" when unset. */
export function dateText(date: DateMessage | undefined): string {
  if (date === undefined) {
    return "";
  }
  const pad = (n: number, width: number) => String(n).padStart(width, "0");
  return `${pad(date.year, 4)}-${pad(date.month, 2)}-${pad(date.day, 2)}`;
}

export function datesText(goal: Goal): string {
  const start = dateText(goal.startDate);
  const end = dateText(goal.endDate);
  if (start && end) {
    return `${start} – ${end}`;
  }
  if (start) {
    return `from ${start}`;
  }
  return end ? `until ${end}` : "—";
}

export function valueText(goal: Goal): string {
  const money = goal.transactionValue;
  return money ? formatMoney(money) : "—";
}

/** Today in `timeZone` (the account's; the browser's own when empty or unknown), as
 * <input type=date> writes it. */
export function todayIn(timeZone: string): string {
  const now = new Date();
  if (timeZone) {
    try {
      // en-CA writes dates as YYYY-MM-DD.
      return new Intl.DateTimeFormat("en-CA", { timeZone }).format(now);
    } catch {
      // An unknown zone: the browser's own below.
    }
  }
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}`;
}

// -- the form ----------------------------------------------------------------------------

export interface ConditionRow {
  operator: ConditionOperator;
  value: string;
}

/** What the person typed, as typed. */
export interface GoalForm {
  name: string;
  description: string;
  active: boolean;
  startDate: string;
  endDate: string;
  groups: string[];
  model: AttributionModel;
  period: string;
  amount: string;
  currency: string;
  goalType: GoalType;
  conditions: ConditionRow[];
}

/** A new goal: active from today when a slot is free (`today` as `todayIn` gives it). */
export function emptyForm(canActivate: boolean, today: string): GoalForm {
  return {
    name: "",
    description: "",
    active: canActivate,
    startDate: canActivate ? today : "",
    endDate: "",
    groups: [""],
    model: AttributionModel.UNSPECIFIED,
    period: "",
    amount: "",
    currency: "",
    goalType: GoalType.UNSPECIFIED,
    conditions: [{ operator: ConditionOperator.CONTAINS, value: "" }],
  };
}

export function formOf(goal: Goal): GoalForm {
  return {
    name: goal.name,
    description: goal.description,
    active: goal.active,
    startDate: dateText(goal.startDate),
    endDate: dateText(goal.endDate),
    groups: [...goal.agentGroupIds],
    model: goal.attributionModel,
    period: String(goal.attributionPeriodDays),
    amount: goal.transactionValue?.amount ?? "",
    currency: goal.transactionValue?.currencyCode ?? "",
    goalType: goal.goalType,
    conditions: goal.conditions.map((c) => ({ operator: c.operator, value: c.value })),
  };
}

type DateInit = { year: number; month: number; day: number };

/** The Date message of an <input type=date> value; undefined when empty. */
export function dateOf(text: string): DateInit | undefined {
  const match = /^(\d{4,6})-(\d{2})-(\d{2})$/.exec(text);
  if (match === null) {
    return undefined;
  }
  return { year: Number(match[1]), month: Number(match[2]), day: Number(match[3]) };
}

/** The period the person typed: undefined when empty (the server says it is required),
 * null when it is not a whole number a request can carry. */
export function periodOf(text: string): number | undefined | null {
  const trimmed = text.trim();
  if (trimmed === "") {
    return undefined;
  }
  if (!/^[+-]?\d{1,9}$/.test(trimmed)) {
    return null;
  }
  return Number(trimmed);
}

function moneyOf(form: GoalForm) {
  if (form.amount === "" && form.currency === "") {
    return undefined;
  }
  return { amount: form.amount, currencyCode: form.currency };
}

/** The writable goal fields, named as UpdateGoalRequest.update_mask names them. */
export const MASK_FIELDS = [
  "name", "description", "start_date", "end_date", "agent_group_ids", "attribution_model",
  "attribution_period_days", "transaction_value", "goal_type", "conditions",
] as const;
export type MaskField = (typeof MASK_FIELDS)[number];

/** The form's part behind each mask field (what is compared to find the changed ones). */
function part(form: GoalForm, field: MaskField): unknown {
  switch (field) {
    case "name": return form.name;
    case "description": return form.description;
    case "start_date": return form.startDate;
    case "end_date": return form.endDate;
    case "agent_group_ids": return form.groups;
    case "attribution_model": return form.model;
    case "attribution_period_days": return form.period.trim();
    case "transaction_value": return [form.amount, form.currency];
    case "goal_type": return form.goalType;
    case "conditions": return form.conditions;
  }
}

export function changedFields(before: GoalForm, after: GoalForm): MaskField[] {
  return MASK_FIELDS.filter(
    (field) => JSON.stringify(part(before, field)) !== JSON.stringify(part(after, field)),
  );
}

/** The writable fields of the form as messages (the period already checked by the caller). */
function fieldsOf(form: GoalForm, period: number | undefined) {
  return {
    name: form.name,
    description: form.description,
    startDate: dateOf(form.startDate),
    endDate: dateOf(form.endDate),
    agentGroupIds: form.groups,
    attributionModel: form.model,
    attributionPeriodDays: period,
    transactionValue: moneyOf(form),
    goalType: form.goalType,
    conditions: form.conditions.map((row) => ({
      category: ConditionCategory.URL, operator: row.operator, value: row.value,
    })),
  };
}

export function createRequest(
  form: GoalForm, period: number | undefined,
): MessageInitShape<typeof CreateGoalRequestSchema> {
  return { ...fieldsOf(form, period), active: form.active };
}

/** The Goal of an UpdateGoal: the fields of `mask` (the others are ignored by the server).
 * An unset period becomes 0 there (Goal's period is not optional); the mask names it only
 * when it changed, and an emptied period is caught before (see `periodOf`). */
export function updateGoal(form: GoalForm, period: number | undefined) {
  const fields = fieldsOf(form, period);
  return { ...fields, attributionPeriodDays: fields.attributionPeriodDays ?? 0 };
}
