// Words for what a conversion carries, shared by the console's agent view and the embeddable
// notice: money as the locale writes it (from the decimal string, never through a float),
// times, and today's start.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Timestamp } from "@bufbuild/protobuf/wkt";

import type { Money } from "../src/gen/goals/v1/common_pb.js";
import type { Conversion } from "../src/gen/goals/v1/tracker_pb.js";

/** `149.99 USD` as the locale writes it ("$149.99"); "no value" when unset. */
export function formatMoney(money: Money | undefined): string {
  if (!money || !money.amount) {
    return "no value";
  }
  try {
    const format = new Intl.NumberFormat(undefined, {
      style: "currency", currency: money.currencyCode,
    });
    // Intl formats a decimal string exactly (no float rounding of 18-digit amounts); the
    // DOM typings still say number.
    return format.format(money.amount as unknown as number);
  } catch {
    return `${money.amount} ${money.currencyCode}`;
  }
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
