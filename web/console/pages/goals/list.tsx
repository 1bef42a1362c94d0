// The goal list: status, model, groups, value and 7-day conversions of every goal, the
// active slots used, and (admins) activate, deactivate and delete.
import { Fragment } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";

import type { GoalSummary } from "../../../src/gen/goals/v1/config_pb.js";
import type { Problem } from "../../api.js";
import { useApp } from "../../app.js";
import { ProblemBanner } from "../../ui/problem.js";
import {
  MAX_ACTIVE,
  activeCount,
  datesText,
  loadAllGoals,
  modelText,
  statusBadge,
  valueText,
} from "./model.js";
import type { GoalList } from "./model.js";

const COUNTS_UNAVAILABLE =
  "The tracker could not answer, so the conversions of the last 7 days cannot be counted " +
  "right now. The goals themselves are shown as configured.";
const FULL_REASON_ID = "goal-slots-full";

type Action = "activate" | "deactivate" | "delete";

function SevenDay({ row, available }: { row: GoalSummary; available: boolean }) {
  if (!available || row.sevenDayConversions === undefined) {
    return <span class="unavailable" title={COUNTS_UNAVAILABLE}>unavailable</span>;
  }
  return <>{row.sevenDayConversions.toString()}</>;
}

function Slots({ used }: { used: number }) {
  const full = used >= MAX_ACTIVE;
  return (
    <div class="goal-slots">
      <p data-testid="goal-slots">
        <strong>{used} of {MAX_ACTIVE}</strong> active slots used
        <span class="hint"> (ended goals count until they are deactivated or deleted)</span>
      </p>
      {full && (
        <p class="notice" id={FULL_REASON_ID}>
          All {MAX_ACTIVE} active slots are used: deactivate or delete an active goal before
          activating another.
        </p>
      )}
    </div>
  );
}

/** The question before a delete, in a row of its own right below the goal's row: focus
 * starts on "Keep it"; Escape, like "Keep it", closes it (and the caller puts the focus
 * back on the row's Delete). */
function ConfirmDelete({ row, busy, columns, onConfirm, onCancel }: {
  row: GoalSummary;
  busy: boolean;
  columns: number;
  onConfirm(): void;
  onCancel(): void;
}) {
  const keep = useRef<HTMLButtonElement>(null);
  useEffect(() => keep.current?.focus(), [row]);
  const name = row.goal?.name ?? "";
  const onKeyDown = (event: KeyboardEvent) => {
    if (event.key === "Escape") {
      event.preventDefault();
      onCancel();
    }
  };
  return (
    <tr class="confirm-row">
      <td colSpan={columns} class="confirm-cell">
        <div class="card confirm" role="alertdialog" aria-labelledby="goal-delete-title"
          aria-describedby="goal-delete-text" onKeyDown={onKeyDown}>
          <h2 id="goal-delete-title">Delete “{name}”?</h2>
          <p id="goal-delete-text">
            Deleting is permanent. Conversions already recorded for this goal stay in reports
            and exports under its name.
          </p>
          <div class="actions">
            <button type="button" class="danger" disabled={busy} onClick={onConfirm}>
              Yes, delete “{name}”
            </button>
            <button type="button" class="secondary" ref={keep} onClick={onCancel}>Keep it</button>
          </div>
        </div>
      </td>
    </tr>
  );
}

function RowActions({ row, full, busy, onAction }: {
  row: GoalSummary;
  full: boolean;
  busy: boolean;
  onAction(action: Action, row: GoalSummary): void;
}) {
  const goal = row.goal!;
  return (
    <td class="row-actions-cell">
      <div class="actions row-actions">
        {goal.active ? (
          <button type="button" class="secondary" disabled={busy}
            aria-label={`Deactivate ${goal.name}`} onClick={() => onAction("deactivate", row)}>
            Deactivate
          </button>
        ) : (
          <button type="button" class="secondary" disabled={busy || full}
            aria-label={`Activate ${goal.name}`}
            aria-describedby={full ? FULL_REASON_ID : undefined}
            title={full ? `All ${MAX_ACTIVE} active slots are used` : undefined}
            onClick={() => onAction("activate", row)}>
            Activate
          </button>
        )}
        <button type="button" class="danger" disabled={busy} aria-label={`Delete ${goal.name}`}
          onClick={() => onAction("delete", row)}>
          Delete
        </button>
      </div>
    </td>
  );
}

interface Confirming {
  row: GoalSummary;
  onConfirm(): void;
  onCancel(): void;
}

function GoalTable({ list, admin, busyId, confirming, onAction }: {
  list: GoalList;
  admin: boolean;
  busyId: string | null;
  /** The goal whose delete is being asked about (its question is drawn below its row). */
  confirming: Confirming | null;
  onAction(action: Action, row: GoalSummary): void;
}) {
  const full = activeCount(list.rows) >= MAX_ACTIVE;
  const columns = admin ? 8 : 7;
  return (
    <div class="table-wrap">
      <table class="goals">
        <caption class="visually-hidden">Goals</caption>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Status</th>
            <th scope="col">Model</th>
            <th scope="col">Groups</th>
            <th scope="col" class="num">Value</th>
            <th scope="col">Dates</th>
            <th scope="col" class="num">7-day conversions</th>
            {admin && <th scope="col">Actions</th>}
          </tr>
        </thead>
        <tbody>
          {list.rows.map((row) => {
            const goal = row.goal!;
            const badge = statusBadge(goal);
            const asking = confirming?.row.goal?.id === goal.id ? confirming : null;
            return (
              <Fragment key={goal.id}>
                <tr data-goal-id={goal.id}>
                  <th scope="row" class="name">
                    <a href={`#/goals/${encodeURIComponent(goal.id)}`}>{goal.name}</a>
                  </th>
                  <td data-label="Status">
                    <span class={`badge ${badge.tone}`}>{badge.text}</span>
                  </td>
                  <td data-label="Model">{modelText(goal.attributionModel)}</td>
                  <td class="groups" data-label="Groups">{goal.agentGroupIds.join(", ")}</td>
                  <td class="num" data-label="Value">{valueText(goal)}</td>
                  <td data-label="Dates">{datesText(goal)}</td>
                  <td class="num" data-testid="seven-day" data-label="7-day conversions">
                    <SevenDay row={row} available={list.countsAvailable} />
                  </td>
                  {admin && (
                    <RowActions row={row} full={full} busy={busyId === goal.id}
                      onAction={onAction} />
                  )}
                </tr>
                {asking && (
                  <ConfirmDelete row={asking.row} busy={busyId !== null} columns={columns}
                    onConfirm={asking.onConfirm} onCancel={asking.onCancel} />
                )}
              </Fragment>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

const DONE: Record<Action, string> = {
  activate: "activated",
  deactivate: "deactivated",
  delete: "deleted",
};

export function GoalListView({ notice, onNotice }: {
  notice: string | null;
  onNotice(message: string | null): void;
}) {
  const { api, fail, session } = useApp();
  const admin = session.role === "admin";
  const [list, setList] = useState<GoalList | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [busyId, setBusyId] = useState<string | null>(null);
  const [confirming, setConfirming] = useState<GoalSummary | null>(null);
  const noticeRef = useRef<HTMLParagraphElement>(null);

  const load = useCallback(async () => {
    setProblem(null);
    try {
      setList(await loadAllGoals(api));
    } catch (err: unknown) {
      setProblem(fail(err));
    }
  }, [api, fail]);
  useEffect(() => { void load(); }, [load]);

  const act = async (action: Action, row: GoalSummary) => {
    const goal = row.goal!;
    setBusyId(goal.id);
    setProblem(null);
    onNotice(null);
    try {
      if (action === "activate") {
        await api.config.activateGoal({ goalId: goal.id });
      } else if (action === "deactivate") {
        await api.config.deactivateGoal({ goalId: goal.id });
      } else {
        await api.config.deleteGoal({ goalId: goal.id });
      }
      setConfirming(null);
      onNotice(`“${goal.name}” ${DONE[action]}.`);
      await load();
      noticeRef.current?.focus();
    } catch (err: unknown) {
      const found = fail(err, true);
      setProblem({ ...found, message: `Could not ${action} “${goal.name}”: ${found.message}` });
    } finally {
      setBusyId(null);
    }
  };
  // Closing the question (Keep it, Escape) puts the focus back on the row's Delete.
  const keepGoal = (row: GoalSummary) => {
    setConfirming(null);
    const id = row.goal?.id ?? "";
    document.querySelector<HTMLElement>(
      `tr[data-goal-id="${CSS.escape(id)}"] .row-actions button.danger`)?.focus();
  };
  const onAction = (action: Action, row: GoalSummary) => {
    if (action === "delete") {
      setConfirming(row);
    } else {
      void act(action, row);
    }
  };

  return (
    <section aria-labelledby="goals-title" class="goals-page">
      <div class="page-head">
        <h1 id="goals-title">Goals</h1>
        {admin && <a class="button" href="#/goals/new">New goal</a>}
      </div>
      {!admin && <p class="hint">Your role can look at goals but not change them.</p>}
      {notice && (
        <p class="notice ok" role="status" tabIndex={-1} ref={noticeRef}>{notice}</p>
      )}
      {list && <Slots used={activeCount(list.rows)} />}
      <ProblemBanner problem={problem} onRetry={() => void load()} />
      {list === null && problem === null && <p role="status">Loading goals…</p>}
      {list && list.rows.length === 0 && (
        <p>No goals yet.{admin && <> <a href="#/goals/new">Create the first one</a>.</>}</p>
      )}
      {list && list.rows.length > 0 && (
        <>
          <GoalTable list={list} admin={admin} busyId={busyId} onAction={onAction}
            confirming={confirming && {
              row: confirming,
              onConfirm: () => void act("delete", confirming),
              onCancel: () => keepGoal(confirming),
            }} />
          {!list.countsAvailable && (
            <p class="hint" role="status">7-day conversions unavailable: {COUNTS_UNAVAILABLE}</p>
          )}
        </>
      )}
    </section>
  );
}
