// The goal form's "What if" panel (issue 14, part 3): before an admin activates a goal,
// ConfigService.SimulateGoal replays the account's stored events of a range under the goal
// as the form holds it (a new goal: its definition; a saved one: its id and the changed
// fields as overrides) and shows the three attribution models side by side. The stream's
// progress is shown as it comes; a new run or leaving the form stops the last one.
import { useEffect, useRef, useState } from "preact/hooks";

import { create } from "@bufbuild/protobuf";
import type { MessageInitShape } from "@bufbuild/protobuf";

import type { Money } from "../../../src/gen/goals/v1/common_pb.js";
import { SimulationProgressSchema } from "../../../src/gen/goals/v1/config_pb.js";
import type {
  SimulateGoalRequestSchema,
  SimulationModelResult,
  SimulationProgress,
  SimulationResult,
} from "../../../src/gen/goals/v1/config_pb.js";
import { formatMoney } from "../../../embed/format.js";
import type { Problem } from "../../api.js";
import { useApp } from "../../app.js";
import { ProblemBanner, fieldMessage } from "../../ui/problem.js";
import { describedBy, labelFor } from "./fields.js";
import { dateOf, modelText } from "./model.js";

type SimulateInit = MessageInitShape<typeof SimulateGoalRequestSchema>;

/** Which goal a simulation runs: what SimulateGoalRequest's goal part holds (its range is
 * the panel's own). */
export type SimulatedGoal = Pick<SimulateInit, "goal" | "overrides" | "overrideMask">;

const DEFAULT_DAYS = 30;
const ENDED_EARLY = "The simulation ended before its result. Try again in a moment.";
const TOP_AGENTS = 5;
/** The request's message names a field of the goal inside it (`definition.conditions[0]`). */
const GOAL_FIELD_RE = /^(?:definition|overrides)\.(.+)$/;

/** `day` ("YYYY-MM-DD") moved by `days`, as <input type=date> writes it. */
export function addDays(day: string, days: number): string {
  const parsed = dateOf(day);
  if (parsed === undefined) {
    return day;
  }
  const moved = new Date(Date.UTC(parsed.year, parsed.month - 1, parsed.day + days));
  return moved.toISOString().slice(0, 10);
}

/** A refusal naming a field of the simulated goal, named as the form names it (without the
 * request's `definition.` or `overrides.`); null for any other problem. */
export function goalFieldProblem(problem: Problem): Problem | null {
  if (problem.kind !== "invalid") {
    return null;
  }
  const inner = GOAL_FIELD_RE.exec(problem.field);
  if (inner === null) {
    return null;
  }
  return { kind: "invalid", field: inner[1], rule: problem.rule,
    message: `${inner[1]}: ${problem.rule}` };
}

function moneyList(values: readonly Money[]): string {
  return values.length ? values.map((m) => formatMoney(m)).join("; ") : "none";
}

function Progress({ progress, done }: { progress: SimulationProgress | null; done: boolean }) {
  const total = Number(progress?.eventsTotal ?? 0n);
  const scanned = Number(progress?.eventsScanned ?? 0n);
  return (
    <div class="whatif-progress">
      <label for="whatif-progress-bar">Events scanned</label>
      {progress === null
        ? <progress id="whatif-progress-bar" />
        : <progress id="whatif-progress-bar" max={Math.max(total, 1)} value={scanned} />}
      <p data-testid="whatif-progress-text">
        {progress === null ? "Starting…"
          : `${done ? "Done: " : ""}${scanned.toLocaleString()} of ${total.toLocaleString()} `
            + "events scanned. "}
        {progress?.conversions.map((c) =>
          `${modelText(c.attributionModel)}: ${c.conversions.toLocaleString()}`).join(" · ")}
        {progress !== null && progress.conversions.length > 0
          && (done ? " conversions." : " conversions so far.")}
      </p>
    </div>
  );
}

function ModelCard({ model }: { model: SimulationModelResult }) {
  const title = modelText(model.attributionModel);
  const id = `whatif-model-${model.attributionModel}`;
  const top = model.agents.slice(0, TOP_AGENTS);
  return (
    <section class="whatif-model" aria-labelledby={id}>
      <h3 id={id}>{title}</h3>
      <dl>
        <dt>Conversions</dt>
        <dd class="count" data-testid="whatif-conversions">{model.conversions.toLocaleString()}</dd>
        <dt>Transaction values</dt>
        <dd data-testid="whatif-transaction-values">{moneyList(model.transactionValues)}</dd>
        <dt>Lead values</dt>
        <dd data-testid="whatif-lead-values">{moneyList(model.leadValues)}</dd>
      </dl>
      {top.length ? (
        <div class="table-wrap">
          <table>
            <caption>Top {top.length === 1 ? "agent" : `${top.length} agents`}</caption>
            <thead>
              <tr><th scope="col">Agent</th><th scope="col" class="num">Conversions</th></tr>
            </thead>
            <tbody>
              {top.map((row) => (
                <tr key={row.key}>
                  <th scope="row">
                    {row.label || row.key}
                    {row.label && row.label !== row.key && <span class="id"> {row.key}</span>}
                  </th>
                  <td class="num">{row.conversions.toLocaleString()}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : <p class="hint">No agent credited.</p>}
    </section>
  );
}

function Results({ run, result, stale }: { run: Run; result: SimulationResult; stale: boolean }) {
  return (
    <section aria-labelledby="whatif-results-title">
      <h3 id="whatif-results-title" class="visually-hidden">Simulated conversions</h3>
      <p class="hint" data-testid="whatif-summary">
        {run.startDate} to {run.endDate}: {result.eventsScanned.toLocaleString()} events
        read, {result.hits.toLocaleString()} matching the conditions.
      </p>
      {stale && (
        <p class="notice" role="status">
          The goal has changed in the form since this simulation: simulate again to see it.
        </p>
      )}
      <div class="whatif-models">
        {result.models.map((model) => <ModelCard key={model.attributionModel} model={model} />)}
      </div>
      {result.models.some((m) => m.rowsTruncated) && (
        <p class="hint">Only the first 500 rows of a list were counted into the top agents.</p>
      )}
    </section>
  );
}

/** The progress a finished run shows: every event of the range read, the result's counts. */
function finalProgress(run: Run, result: SimulationResult): SimulationProgress {
  return create(SimulationProgressSchema, {
    eventsScanned: result.eventsScanned,
    eventsTotal: run.progress?.eventsTotal ?? result.eventsScanned,
    conversions: result.models.map((m) => ({
      attributionModel: m.attributionModel, conversions: m.conversions,
    })),
  });
}

/** What the last run was refused: a field of the goal (`inGoal`, named as the form names
 * it) or anything else (the range, the service). */
interface Refused {
  problem: Problem;
  inGoal: boolean;
}

/** The refusal when it is about the range's days (shown beside the panel's dates). */
function rangeProblem(refused: Refused | null): Problem | null {
  if (refused === null || refused.inGoal) {
    return null;
  }
  const { problem } = refused;
  return fieldMessage(problem, "start_date") || fieldMessage(problem, "end_date")
    ? problem : null;
}

interface Run {
  /** The goal simulated, as JSON (to tell when the form has changed since). */
  goalKey: string;
  /** The range simulated, as the panel's date inputs held it. */
  startDate: string;
  endDate: string;
  progress: SimulationProgress | null;
  result: SimulationResult | null;
}

function useSimulation(onGoalProblem: (problem: Problem | null) => void) {
  const { api, fail } = useApp();
  const [run, setRun] = useState<Run | null>(null);
  const [problem, setProblem] = useState<Refused | null>(null);
  const abort = useRef<AbortController | null>(null);
  useEffect(() => () => abort.current?.abort(), []); // leaving the form stops the stream

  const start = async (goal: SimulatedGoal, startDate: string, endDate: string) => {
    abort.current?.abort();
    const controller = new AbortController();
    abort.current = controller;
    const goalKey = JSON.stringify(goal);
    setProblem(null);
    onGoalProblem(null);
    setRun({ goalKey, startDate, endDate, progress: null, result: null });
    let finished = false;
    try {
      const stream = api.config.simulateGoal(
        { ...goal, startDate: dateOf(startDate), endDate: dateOf(endDate) },
        { signal: controller.signal });
      for await (const message of stream) {
        if (controller.signal.aborted) {
          return;
        }
        const update = message.update;
        if (update.case === "progress") {
          const progress = update.value;
          setRun((last) => (last && { ...last, progress }));
        } else if (update.case === "result") {
          const result = update.value;
          finished = true;
          setRun((last) => (last && { ...last, result, progress: finalProgress(last, result) }));
        }
      }
      if (!finished && !controller.signal.aborted) {
        // The stream closed cleanly before its result (a server shutting down, say).
        setProblem({ problem: { kind: "unavailable", message: ENDED_EARLY }, inGoal: false });
        setRun(null);
      }
    } catch (err: unknown) {
      if (controller.signal.aborted) {
        return; // stopped on purpose: a new run or the form closed
      }
      const described = fail(err);
      const inGoal = goalFieldProblem(described);
      onGoalProblem(inGoal);
      setProblem(inGoal ? { problem: inGoal, inGoal: true }
        : { problem: described, inGoal: false });
      setRun(null);
    } finally {
      if (abort.current === controller) {
        abort.current = null;
      }
    }
  };
  const stop = () => {
    abort.current?.abort();
    abort.current = null;
    setRun(null);
  };
  const running = run !== null && run.result === null;
  return { run, problem, setProblem, start, stop, running };
}

/** The goal-level refusal in words: the field it names is beside the form's input (see
 * `onGoalProblem`); a range field beside the panel's date; any other as a banner. */
function Refusal({ refused, placed }: { refused: Refused | null; placed: boolean }) {
  const problem = refused?.problem ?? null;
  if (problem === null || rangeProblem(refused) !== null) {
    return null;
  }
  if (problem.kind === "invalid" && refused?.inGoal && placed) {
    return (
      <p class="field-error" role="alert">
        Not simulated: see the message beside {labelFor(problem.field)} in the form above.
      </p>
    );
  }
  return <ProblemBanner problem={problem} />;
}

/** Beside a date of the range: the server's message about it. */
function DateField({ id, label, field, value, problem, onInput }: {
  id: string;
  label: string;
  field: string;
  value: string;
  problem: Problem | null;
  onInput(value: string): void;
}) {
  const message = fieldMessage(problem, field);
  return (
    <div>
      <label for={id}>{label}</label>
      <input type="date" id={id} value={value} aria-invalid={message ? "true" : undefined}
        aria-describedby={describedBy("whatif-range-hint", message && `${id}-error`)}
        onInput={(e) => onInput(e.currentTarget.value)} />
      {message && <p class="field-error" id={`${id}-error`}>{message}</p>}
    </div>
  );
}

/** The panel. `goal()` builds the goal part of the request from the form as it is now (or
 * a problem the form shows beside its field); `current` is that goal's JSON (or null), to
 * tell a shown result from the form's present state; `onGoalProblem` places a refusal of a
 * goal field beside the form's input (null clears it) and says whether the form has one. */
export function WhatIfPanel({ today, timeZone, goal, current, onGoalProblem }: {
  today: string;
  timeZone: string;
  goal(): SimulatedGoal | Problem;
  current: string | null;
  onGoalProblem(problem: Problem | null): boolean;
}) {
  const [startDate, setStartDate] = useState(() => addDays(today, 1 - DEFAULT_DAYS));
  const [endDate, setEndDate] = useState(today);
  const [placed, setPlaced] = useState(false);
  const sim = useSimulation((problem) => setPlaced(onGoalProblem(problem)));
  const { run } = sim;

  const simulate = () => {
    const built = goal();
    if ("kind" in built) {
      setPlaced(onGoalProblem(built));
      sim.setProblem({ problem: built, inGoal: true });
      return;
    }
    void sim.start(built, startDate, endDate);
  };
  const dateProblem = rangeProblem(sim.problem);

  return (
    <section class="whatif" aria-labelledby="whatif-title">
      <h2 id="whatif-title">What if</h2>
      <p class="hint">
        A simulation writes nothing and does not count against the 15 active goals.
      </p>
      <p class="hint">
        The account's stored events of these days are replayed under the goal as the form
        holds it now, saved or not, as if it had been active all along, under each
        attribution model.
      </p>
      <div class="pair">
        <DateField id="whatif-start" label="What-if from" field="start_date" value={startDate}
          problem={dateProblem} onInput={setStartDate} />
        <DateField id="whatif-end" label="What-if to" field="end_date" value={endDate}
          problem={dateProblem} onInput={setEndDate} />
      </div>
      <p class="hint" id="whatif-range-hint">
        Both days included, in the account's time zone{timeZone && ` (${timeZone})`}; not
        after today.
      </p>
      <div class="actions">
        {/* A new run stops the one still streaming. */}
        <button type="button" onClick={simulate}>Simulate</button>
        {sim.running && <button type="button" class="secondary" onClick={sim.stop}>Stop</button>}
      </div>
      <Refusal refused={sim.problem} placed={placed} />
      <div aria-live="polite" data-testid="whatif-live">
        {run !== null && <Progress progress={run.progress} done={run.result !== null} />}
        {run?.result && <Results run={run} result={run.result} stale={current !== run.goalKey} />}
      </div>
    </section>
  );
}
