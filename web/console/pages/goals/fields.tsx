// The goal form's repeated fields (agent groups, URL conditions) and how a server message
// finds the input it names.
import { useState } from "preact/hooks";

import { ConditionOperator } from "../../../src/gen/goals/v1/config_pb.js";
import type { Problem } from "../../api.js";
import { FieldError, fieldMessage } from "../../ui/problem.js";
import { MAX_CONDITIONS, OPERATORS } from "./model.js";
import type { ConditionRow, GoalForm } from "./model.js";

/** The message of `problem` when it names exactly `field` (not a field inside it). */
export function exactMessage(problem: Problem | null, field: string): string | null {
  return problem?.kind === "invalid" && problem.field === field ? problem.message : null;
}

/** aria-describedby from the ids given (falsy ones left out); undefined when none. */
export function describedBy(...ids: (string | null | false | undefined)[]): string | undefined {
  const kept = ids.filter((id): id is string => Boolean(id));
  return kept.length ? kept.join(" ") : undefined;
}

const SIMPLE: Record<string, string> = {
  name: "goal-name",
  description: "goal-description",
  active: "goal-active",
  start_date: "goal-start",
  end_date: "goal-end",
  attribution_model: "goal-model",
  attribution_period_days: "goal-period",
  transaction_value: "goal-amount",
  "transaction_value.amount": "goal-amount",
  "transaction_value.currency_code": "goal-currency",
  goal_type: "goal-type",
};

const LABELS: Record<string, string> = {
  name: "Name",
  description: "Description",
  active: "Active",
  start_date: "Start date",
  end_date: "End date",
  agent_group_ids: "Agent groups",
  attribution_model: "Attribution model",
  attribution_period_days: "Attribution period",
  transaction_value: "Value per conversion",
  goal_type: "Goal type",
  conditions: "Conditions",
};

/** The form's name for a server's field path (`conditions[3].value`: "Conditions"). */
export function labelFor(field: string): string {
  const top = /^[a-z_]+/.exec(field)?.[0] ?? field;
  return LABELS[top] ?? field;
}

/** The id of the input a server's field path names, or null when the form has none. */
export function inputFor(field: string, form: GoalForm): string | null {
  if (field in SIMPLE) {
    return SIMPLE[field];
  }
  const group = /^agent_group_ids(?:\[(\d+)\])?$/.exec(field);
  if (group) {
    const index = Number(group[1] ?? 0);
    return index < form.groups.length ? `goal-group-${index}` : "goal-group-add";
  }
  const condition = /^conditions(?:\[(\d+)\](?:\.([a-z_]+))?)?$/.exec(field);
  if (condition) {
    const index = Number(condition[1] ?? 0);
    const part = condition[2] === "operator" ? "operator" : "value";
    return index < form.conditions.length ? `goal-condition-${index}-${part}`
      : "goal-condition-add";
  }
  return null;
}

export function GroupsField({ groups, problem, readOnly, onChange }: {
  groups: string[];
  problem: Problem | null;
  readOnly: boolean;
  onChange(groups: string[]): void;
}) {
  const whole = exactMessage(problem, "agent_group_ids");
  const set = (index: number, value: string) =>
    onChange(groups.map((group, i) => (i === index ? value : group)));
  return (
    <fieldset class="rows" aria-describedby={describedBy("goal-groups-hint",
      whole && "goal-groups-error")}>
      <legend>Agent groups</legend>
      <p class="hint" id="goal-groups-hint">
        Only the conversations of agents in these groups count. At least one.
      </p>
      <FieldError id="goal-groups-error" message={whole} />
      {groups.map((group, index) => {
        const id = `goal-group-${index}`;
        const own = fieldMessage(problem, `agent_group_ids[${index}]`);
        const message = own ?? whole;
        return (
          <div class="row" key={index}>
            <label for={id} class="visually-hidden">Agent group {index + 1}</label>
            <input id={id} value={group} readOnly={readOnly} autocomplete="off"
              aria-invalid={message ? "true" : undefined}
              aria-describedby={describedBy(own && `${id}-error`, whole && "goal-groups-error")}
              onInput={(e) => set(index, e.currentTarget.value)} />
            {!readOnly && (
              <button type="button" class="secondary" aria-label={`Remove agent group ${index + 1}`}
                onClick={() => onChange(groups.filter((_, i) => i !== index))}>
                Remove
              </button>
            )}
            <FieldError id={`${id}-error`} message={own} />
          </div>
        );
      })}
      {!readOnly && (
        <button type="button" class="secondary" id="goal-group-add"
          onClick={() => onChange([...groups, ""])}>
          Add a group
        </button>
      )}
    </fieldset>
  );
}

function OperatorSelect({ id, value, readOnly, invalid, describedById, onChange }: {
  id: string;
  value: ConditionOperator;
  readOnly: boolean;
  invalid: boolean;
  describedById?: string | undefined;
  onChange(value: ConditionOperator): void;
}) {
  return (
    <select id={id} value={String(value)} disabled={readOnly}
      aria-invalid={invalid ? "true" : undefined} aria-describedby={describedById}
      onChange={(e) => onChange(Number(e.currentTarget.value) as ConditionOperator)}>
      {value === ConditionOperator.UNSPECIFIED && <option value="0">Choose…</option>}
      {OPERATORS.map(([operator, text]) => <option value={String(operator)}>{text}</option>)}
    </select>
  );
}

const NEW_ROW: ConditionRow = { operator: ConditionOperator.CONTAINS, value: "" };

/** Lines of a pasted list as condition rows (blank lines skipped). */
function pasted(text: string, operator: ConditionOperator): ConditionRow[] {
  return text.split(/\r?\n/).map((line) => line.trim()).filter(Boolean)
    .map((value) => ({ operator, value }));
}

function PasteMany({ onAdd }: { onAdd(rows: ConditionRow[]): void }) {
  const [text, setText] = useState("");
  const [operator, setOperator] = useState(ConditionOperator.CONTAINS);
  const add = () => {
    const rows = pasted(text, operator);
    if (rows.length) {
      onAdd(rows);
      setText("");
    }
  };
  return (
    <details class="paste-many">
      <summary>Paste many</summary>
      <label for="goal-paste">Conditions to add, one URL or fragment per line</label>
      <textarea id="goal-paste" rows={5} value={text}
        onInput={(e) => setText(e.currentTarget.value)} />
      <div class="row">
        <label for="goal-paste-operator">Each URL</label>
        <OperatorSelect id="goal-paste-operator" value={operator} readOnly={false}
          invalid={false} onChange={setOperator} />
        <button type="button" class="secondary" onClick={add}>Add these conditions</button>
      </div>
    </details>
  );
}

export function ConditionsField({ rows, problem, readOnly, onChange }: {
  rows: ConditionRow[];
  problem: Problem | null;
  readOnly: boolean;
  onChange(rows: ConditionRow[]): void;
}) {
  const whole = exactMessage(problem, "conditions");
  const set = (index: number, row: Partial<ConditionRow>) =>
    onChange(rows.map((old, i) => (i === index ? { ...old, ...row } : old)));
  const over = rows.length > MAX_CONDITIONS;
  return (
    <fieldset class="rows conditions"
      aria-describedby={describedBy("goal-conditions-hint", whole && "goal-conditions-error")}>
      <legend>Conditions</legend>
      <p class="hint" id="goal-conditions-hint">
        A conversation converts when the end user reaches a URL matching any one of these.
        “contains” ignores case; “is” compares whole URLs.{" "}
        <span class={over ? "over" : undefined} data-testid="goal-condition-count">
          {rows.length} / {MAX_CONDITIONS}
        </span>
      </p>
      <FieldError id="goal-conditions-error" message={whole} />
      {rows.map((row, index) => {
        const id = `goal-condition-${index}`;
        const own = fieldMessage(problem, `conditions[${index}]`);
        const errorIds = describedBy(own && `${id}-error`, whole && "goal-conditions-error");
        return (
          <div class="row condition" key={index}>
            <label for={`${id}-operator`} class="visually-hidden">
              Condition {index + 1} operator
            </label>
            <OperatorSelect id={`${id}-operator`} value={row.operator} readOnly={readOnly}
              invalid={Boolean(own?.startsWith(`conditions[${index}].operator`))}
              describedById={errorIds} onChange={(operator) => set(index, { operator })} />
            <label for={`${id}-value`} class="visually-hidden">
              Condition {index + 1} value
            </label>
            <input id={`${id}-value`} value={row.value} readOnly={readOnly} autocomplete="off"
              placeholder="/checkout/complete"
              aria-invalid={own || whole ? "true" : undefined} aria-describedby={errorIds}
              onInput={(e) => set(index, { value: e.currentTarget.value })} />
            {!readOnly && (
              <button type="button" class="secondary" aria-label={`Remove condition ${index + 1}`}
                onClick={() => onChange(rows.filter((_, i) => i !== index))}>
                Remove
              </button>
            )}
            <FieldError id={`${id}-error`} message={own} />
          </div>
        );
      })}
      {!readOnly && (
        <>
          <button type="button" class="secondary" id="goal-condition-add"
            onClick={() => onChange([...rows, NEW_ROW])}>
            Add a condition
          </button>
          <PasteMany onAdd={(added) => onChange(
            rows.length === 1 && rows[0].value === "" ? added : [...rows, ...added])} />
        </>
      )}
    </fieldset>
  );
}
