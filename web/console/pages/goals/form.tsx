// The create and edit form of a goal (#/goals/new, #/goals/<id>): every field, sent as the
// person typed it; the server validates and its message is shown beside the field it names.
// Supervisors see the same form read-only.
import { useEffect, useState } from "preact/hooks";

import type { Goal } from "../../../src/gen/goals/v1/config_pb.js";
import type { Problem } from "../../api.js";
import { useApp } from "../../app.js";
import { ProblemBanner } from "../../ui/problem.js";
import { forgetDraft, keepDraft, stillSignedIn, takeDraft } from "./draft.js";
import {
  ConditionsField,
  GroupsField,
  describedBy,
  exactMessage,
  inputFor,
  labelFor,
} from "./fields.js";
import {
  GOAL_TYPES,
  MAX_ACTIVE,
  MODELS,
  activeCount,
  changedFields,
  createRequest,
  emptyForm,
  formOf,
  loadAllGoals,
  periodOf,
  statusBadge,
  todayIn,
  updateGoal,
} from "./model.js";
import type { GoalForm } from "./model.js";
import { WhatIfPanel } from "./whatif.js";
import type { SimulatedGoal } from "./whatif.js";

interface Loaded {
  /** The goal being edited (null for a new one). */
  goal: Goal | null;
  /** The form as last saved (edit) or as first shown (new): what changes are found against. */
  initial: GoalForm;
  revision: bigint;
  /** Active goals of the account; null when they could not be counted (or not asked:
   * read-only). */
  used: number | null;
  timeZone: string;
  /** The form as the person left it when their last session ended (see draft.ts). */
  restored: GoalForm | null;
  /** Such a form was dropped: the goal has changed since. */
  dropped?: boolean;
}

const RESTORED = "Restored the unsaved changes from before you signed in again.";
const DROPPED = "Your unsaved changes from before you signed in again were not restored: " +
  "the goal has been changed since. This is the goal as it is now.";

function local(field: string, rule: string): Problem {
  return { kind: "invalid", field, rule, message: `${field}: ${rule}` };
}

async function loadForm(app: ReturnType<typeof useApp>, goalId: string | null): Promise<Loaded> {
  const { api, fail, session } = app;
  const goal = goalId === null ? null : (await api.config.getGoal({ goalId })).goal ?? null;
  let used: number | null = null;
  let timeZone = goal?.timeZone ?? "";
  if (session.role === "admin") {
    try {
      const list = await loadAllGoals(api);
      used = activeCount(list.rows);
      timeZone ||= list.rows[0]?.goal?.timeZone ?? "";
    } catch (err: unknown) {
      fail(err); // an ended session signs out; otherwise the server still enforces the limit
    }
  }
  const initial = goal ? formOf(goal)
    : emptyForm(used === null || used < MAX_ACTIVE, todayIn(timeZone));
  const loaded = { goal, initial, revision: goal?.revision ?? 0n, used, timeZone };
  const draft = session.role === "admin" ? takeDraft(session, goalId ?? "new") : null;
  if (draft === null) {
    return { ...loaded, restored: null };
  }
  if (goal === null) {
    // A new goal: activating it still needs a free slot now.
    const form = initial.active ? draft.form : { ...draft.form, active: false };
    return { ...loaded, restored: form };
  }
  // Changes made against another revision are not given back: an edit that only flips
  // Active would go through ActivateGoal/DeactivateGoal, which check no revision, onto a
  // goal someone else changed meanwhile.
  if (goal.revision !== BigInt(draft.revision)) {
    return { ...loaded, restored: null, dropped: true };
  }
  return { ...loaded, initial: draft.initial, restored: draft.form };
}

const PERIOD_RULE = "a whole number of days from 0 to 31";

/** The period a request carries (undefined: unset), or the problem with it: not a number a
 * request can carry, or emptied on an update (where unset means 0). */
function checkedPeriod(form: GoalForm, initial: GoalForm, creating: boolean
): number | undefined | Problem {
  const period = periodOf(form.period);
  if (period === null || (!creating && period === undefined
    && form.period.trim() !== initial.period)) {
    return local("attribution_period_days", PERIOD_RULE);
  }
  return period;
}

/** The goal a what-if simulates, built as saving would send it: a new goal's definition
 * (CreateGoal's request), or a saved goal's id with the changed fields as overrides
 * (UpdateGoal's goal and mask; nothing changed: the goal as saved). */
function simulatedGoal(form: GoalForm, initial: GoalForm, goalId: string | null
): SimulatedGoal | Problem {
  const period = checkedPeriod(form, initial, goalId === null);
  if (typeof period === "object") {
    return period;
  }
  if (goalId === null) {
    return { goal: { case: "definition", value: createRequest(form, period) } };
  }
  const mask = changedFields(initial, form);
  if (!mask.length) {
    return { goal: { case: "goalId", value: goalId } };
  }
  return { goal: { case: "goalId", value: goalId }, overrides: updateGoal(form, period),
    overrideMask: { paths: mask } };
}

function whatIfKey(goal: SimulatedGoal | Problem): string | null {
  return "kind" in goal ? null : JSON.stringify(goal);
}

/** Attributes tying an input to its hint and to the server's message about `fields`. */
function fieldAttrs(problem: Problem | null) {
  return (id: string, fields: string[], hintId?: string) => {
    const message = fields.map((f) => exactMessage(problem, f)).find(Boolean) ?? null;
    return {
      message,
      attrs: {
        id,
        "aria-invalid": message ? ("true" as const) : undefined,
        "aria-describedby": describedBy(hintId, message && `${id}-error`),
      },
      error: message ? <p class="field-error" id={`${id}-error`}>{message}</p> : null,
    };
  };
}

/** How many active slots are used, for the admin who may activate (the server enforces the
 * limit either way; a read-only view does not count them). */
function SlotsNote({ used }: { used: number | null }) {
  return (
    <>
      {used === null
        ? `The active slots could not be counted; the server still allows at most ${MAX_ACTIVE}. `
        : `${used} of ${MAX_ACTIVE} active slots used. `}
    </>
  );
}

function Buttons({ creating, busy, readOnly }: {
  creating: boolean;
  busy: boolean;
  readOnly: boolean;
}) {
  return (
    <div class="actions form-actions">
      {!readOnly && (
        <button type="submit" disabled={busy}>
          {busy ? "Saving…" : creating ? "Create goal" : "Save changes"}
        </button>
      )}
      <a href="#/goals" class="button secondary">{readOnly ? "Back to goals" : "Cancel"}</a>
    </div>
  );
}

export function GoalFormView({ goalId, onSaved }: {
  goalId: string | null;
  onSaved(message: string): void;
}) {
  const app = useApp();
  const { api, fail, session } = app;
  const readOnly = session.role !== "admin";
  const [loaded, setLoaded] = useState<Loaded | null>(null);
  const [form, setForm] = useState<GoalForm | null>(null);
  const [loadProblem, setLoadProblem] = useState<Problem | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  /** The what-if's refusal of a field of the goal (shown beside it, as a save's is). */
  const [simProblem, setSimProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);
  const [attempt, setAttempt] = useState(0);
  const route = goalId ?? "new";

  useEffect(() => {
    let live = true;
    setLoadProblem(null);
    loadForm(app, goalId).then(
      (result) => {
        if (live) {
          setLoaded(result);
          setForm(result.restored ?? result.initial);
          if (result.restored) {
            keepDraft(session, route, { form: result.restored, initial: result.initial,
              revision: result.revision.toString() }); // kept for this session too
          }
        }
      },
      (err: unknown) => { if (live) { setLoadProblem(fail(err)); } },
    );
    return () => { live = false; };
  }, [goalId, attempt]);

  // Leaving the form while still signed in (a link, Cancel, saved) discards its draft; a
  // form closed because the session ended keeps it for the next sign-in.
  useEffect(() => () => {
    if (stillSignedIn(session)) {
      forgetDraft(session, route);
    }
  }, [route]);

  // The first (and only: the server names one) field the server refused gets the focus.
  const shownProblem = problem ?? simProblem;
  useEffect(() => {
    if (shownProblem?.kind === "invalid" && form) {
      const id = inputFor(shownProblem.field, form);
      if (id) {
        document.getElementById(id)?.focus();
      }
    }
  }, [shownProblem]);

  const field = fieldAttrs(shownProblem);
  if (loaded === null || form === null) {
    return (
      <section>
        <p><a href="#/goals">← All goals</a></p>
        {loadProblem
          ? <ProblemBanner problem={loadProblem} onRetry={() => setAttempt((n) => n + 1)} />
          : <p role="status">Loading…</p>}
      </section>
    );
  }
  const set = (changes: Partial<GoalForm>) => {
    const next = { ...form, ...changes };
    setForm(next);
    // Kept at once (not in an effect): the session may end before the next render.
    if (changedFields(loaded.initial, next).length || next.active !== loaded.initial.active) {
      keepDraft(session, route, { form: next, initial: loaded.initial,
        revision: loaded.revision.toString() });
    } else {
      forgetDraft(session, route);
    }
  };
  const slotsFull = loaded.used !== null && loaded.used >= MAX_ACTIVE;
  const activeLocked = !readOnly && slotsFull && !loaded.initial.active;

  const save = async (period: number | undefined) => {
    if (goalId === null) {
      const reply = await api.config.createGoal(createRequest(form, period));
      forgetDraft(session, route);
      onSaved(`“${reply.goal?.name ?? form.name}” created.`);
      return;
    }
    const mask = changedFields(loaded.initial, form);
    let saved: Goal | undefined;
    if (mask.length) {
      const reply = await api.config.updateGoal({
        goalId, goal: updateGoal(form, period), updateMask: { paths: mask },
        expectedRevision: loaded.revision,
      });
      saved = reply.goal;
      // Saved: a refused activation below must not send these fields again.
      const initial = { ...form, active: loaded.initial.active };
      const revision = saved?.revision ?? loaded.revision;
      setLoaded({ ...loaded, initial, revision });
      keepDraft(session, route, { form, initial, revision: revision.toString() });
    }
    if (form.active !== loaded.initial.active) {
      saved = form.active
        ? (await api.config.activateGoal({ goalId })).goal
        : (await api.config.deactivateGoal({ goalId })).goal;
    }
    forgetDraft(session, route);
    onSaved(saved ? `“${saved.name}” saved.` : "Nothing changed.");
  };

  const submit = async (event: Event) => {
    event.preventDefault();
    if (readOnly || busy) {
      return;
    }
    const period = checkedPeriod(form, loaded.initial, goalId === null);
    setSimProblem(null);
    if (typeof period === "object") {
      setProblem(period);
      return;
    }
    setBusy(true);
    setProblem(null);
    try {
      await save(period);
    } catch (err: unknown) {
      setProblem(fail(err, true));
    } finally {
      setBusy(false);
    }
  };

  const placed = problem?.kind === "invalid" && inputFor(problem.field, form) !== null;
  const name = field("goal-name", ["name"]);
  const description = field("goal-description", ["description"]);
  const active = field("goal-active", ["active"],
    activeLocked ? "goal-active-full" : "goal-active-hint");
  const start = field("goal-start", ["start_date"], "goal-dates-hint");
  const end = field("goal-end", ["end_date"], "goal-dates-hint");
  const model = field("goal-model", ["attribution_model"]);
  const period = field("goal-period", ["attribution_period_days"], "goal-period-hint");
  const amount = field("goal-amount", ["transaction_value.amount", "transaction_value"],
    "goal-value-hint");
  const currency = field("goal-currency", ["transaction_value.currency_code"], "goal-value-hint");
  const goalType = field("goal-type", ["goal_type"]);
  const badge = loaded.goal ? statusBadge(loaded.goal) : null;
  const title = loaded.goal
    ? `${readOnly ? "" : "Edit "}“${loaded.goal.name}”`
    : "New goal";

  return (
    <section aria-labelledby="goal-form-title" class="goals-page goal-form">
      <p><a href="#/goals">← All goals</a></p>
      <div class="page-head">
        <h1 id="goal-form-title">{title}</h1>
        {badge && <span class={`badge ${badge.tone}`}>{badge.text}</span>}
      </div>
      {readOnly && <p class="hint">Your role can look at goals but not change them.</p>}
      {loaded.restored && <p class="notice" role="status">{RESTORED}</p>}
      {loaded.dropped && <p class="notice" role="status">{DROPPED}</p>}
      <form noValidate onSubmit={(e) => void submit(e)} aria-labelledby="goal-form-title">
        <fieldset class="plain" disabled={readOnly}>
          <label for="goal-name">Name</label>
          <input {...name.attrs} value={form.name} autocomplete="off"
            onInput={(e) => set({ name: e.currentTarget.value })} />
          {name.error}

          <label for="goal-description">Description (optional)</label>
          <textarea {...description.attrs} rows={2} value={form.description}
            onInput={(e) => set({ description: e.currentTarget.value })} />
          {description.error}

          <div class="check">
            <input type="checkbox" {...active.attrs} checked={form.active} disabled={activeLocked}
              onChange={(e) => set({ active: e.currentTarget.checked })} />
            <label for="goal-active">Active</label>
          </div>
          {activeLocked ? (
            <p class="notice" id="goal-active-full">
              All {MAX_ACTIVE} active slots are used, so this goal can only be saved inactive:
              deactivate or delete an active goal first.
            </p>
          ) : (
            <p class="hint" id="goal-active-hint">
              {!readOnly && <SlotsNote used={loaded.used} />}
              An active goal is tracked from its start date through its end date.
            </p>
          )}
          {active.error}

          <div class="pair">
            <div>
              <label for="goal-start">Start date</label>
              <input type="date" {...start.attrs} value={form.startDate}
                onInput={(e) => set({ startDate: e.currentTarget.value })} />
              {start.error}
            </div>
            <div>
              <label for="goal-end">End date (optional)</label>
              <input type="date" {...end.attrs} value={form.endDate}
                onInput={(e) => set({ endDate: e.currentTarget.value })} />
              {end.error}
            </div>
          </div>
          <p class="hint" id="goal-dates-hint">
            Dates are days in the account's time zone{loaded.timeZone && ` (${loaded.timeZone})`}.
            The start date is required while the goal is active and cannot be before today.
          </p>

          <GroupsField groups={form.groups} problem={shownProblem} readOnly={readOnly}
            onChange={(groups) => set({ groups })} />

          <div class="pair">
            <div>
              <label for="goal-model">Attribution model</label>
              <select {...model.attrs} value={String(form.model)}
                onChange={(e) => set({ model: Number(e.currentTarget.value) })}>
                <option value="0">Choose…</option>
                {MODELS.map(([value, text]) => <option value={String(value)}>{text}</option>)}
              </select>
              {model.error}
            </div>
            <div>
              <label for="goal-period">Attribution period (days)</label>
              <input type="number" inputMode="numeric" min={0} max={31} step={1}
                {...period.attrs} value={form.period}
                onInput={(e) => set({ period: e.currentTarget.value })} />
              <p class="hint" id="goal-period-hint">0 to 31 (usually 0, 1, 7, 14 or 31).</p>
              {period.error}
            </div>
          </div>

          <div class="pair">
            <div>
              <label for="goal-amount">Value per conversion (optional)</label>
              <input {...amount.attrs} inputMode="decimal" value={form.amount} autocomplete="off"
                placeholder="149.99" onInput={(e) => set({ amount: e.currentTarget.value })} />
              {amount.error}
            </div>
            <div>
              <label for="goal-currency">Currency</label>
              <input {...currency.attrs} value={form.currency} size={5} autocomplete="off"
                placeholder="USD" onInput={(e) => set({ currency: e.currentTarget.value })} />
              {currency.error}
            </div>
          </div>
          <p class="hint" id="goal-value-hint">
            Used when the converting event carries no value. An ISO 4217 code, such as USD.
          </p>

          <label for="goal-type">Goal type (optional)</label>
          <select {...goalType.attrs} value={String(form.goalType)}
            onChange={(e) => set({ goalType: Number(e.currentTarget.value) })}>
            <option value="0">Not set</option>
            {GOAL_TYPES.map(([value, text]) => <option value={String(value)}>{text}</option>)}
          </select>
          {goalType.error}

          <ConditionsField rows={form.conditions} problem={shownProblem} readOnly={readOnly}
            onChange={(conditions) => set({ conditions })} />
        </fieldset>

        {problem?.kind === "invalid" && placed ? (
          <p class="field-error" role="alert">
            Not saved: see the message beside {labelFor(problem.field)}.
          </p>
        ) : <ProblemBanner problem={problem} />}
        <Buttons creating={goalId === null} busy={busy} readOnly={readOnly} />
      </form>
      {!readOnly && (
        <WhatIfPanel today={todayIn(loaded.timeZone)} timeZone={loaded.timeZone}
          goal={() => simulatedGoal(form, loaded.initial, goalId)}
          current={whatIfKey(simulatedGoal(form, loaded.initial, goalId))}
          onGoalProblem={(found) => {
            if (found) {
              setProblem(null); // the newer refusal is the one shown
            }
            setSimProblem(found);
            return found?.kind === "invalid" && inputFor(found.field, form) !== null;
          }} />
      )}
    </section>
  );
}
