// Words for what a conversion carries, shared by the console (goals, reports, the agent
// view) and the embeddable notice: money in one form everywhere, times, and today's start.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Timestamp } from "@bufbuild/protobuf/wkt";

import type { Money } from "../src/gen/goals/v1/common_pb.js";
import type { Conversion } from "../src/gen/goals/v1/tracker_pb.js";

const DECIMAL_RE = /^([+-]?)(\d+)(?:\.(\d*))?$/;

/** Digits after the point of `currencyCode` (ISO 4217 minor units: USD 2, JPY 0, BHD 3);
 * null when the code is not one Intl accepts. */
export function minorUnits(currencyCode: string): number | null {
  try {
    return new Intl.NumberFormat("en", { style: "currency", currency: currencyCode })
      .resolvedOptions().maximumFractionDigits ?? null;
  } catch {
    return null;
  }
}

/** The amount with its currency's minor units and the code: "25.00 EUR", "59.90 USD",
 * "1500 JPY". Worked on the decimal string, never through a float, and never rounded (an
 * amount with more digits than the minor units keeps them). The same in every place money
 * is shown: goals, reports, exports, the agent view and the embed. "no value" when unset. */
export function formatMoney(money: Money | undefined): string {
  if (!money || !money.amount) {
    return "no value";
  }
  const code = money.currencyCode;
  const match = DECIMAL_RE.exec(money.amount.trim());
  const minor = minorUnits(code);
  if (match === null || minor === null) {
    return `${money.amount} ${code}`.trim(); // as the server holds it
  }
  const [, sign, whole, fraction = ""] = match;
  const digits = fraction.padEnd(minor, "0");
  const number = digits ? `${whole}.${digits}` : whole;
  return `${sign === "-" ? "-" : ""}${number} ${code}`;
}

/** A timestamp as a Date; null when unset. */
export function toDate(ts: Timestamp | undefined): Date | null {
  return ts ? timestampDate(ts) : null;
}

/** Date and time in the reader's locale; "—" when unset. */
export function formatTime(ts: Timestamp | undefined): string {
  const when = toDate(ts);
  return when ? when.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }) : "—";
}

/** The goal's name, or its id when a conversion carries no name. */
export function goalLabel(conversion: Conversion): string {
  return conversion.goalName || conversion.goalId;
}

/** Local midnight of `now`'s day: where "today's conversions" start. */
export function startOfToday(now: Date = new Date()): Date {
  return new Date(now.getFullYear(), now.getMonth(), now.getDate());
}
