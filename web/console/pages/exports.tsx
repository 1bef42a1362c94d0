// The exports page (admins): request a goal's conversions as a zipped CSV mailed to someone,
// follow that job until it is mailed or fails, and page through the account's past exports.
//
// A request carries an idempotency key (`request_id`): one per submission, kept if the
// submission is tried again after the network failed (the server may have recorded it), so
// neither a double click nor a retry makes a second job. The job is followed with GetExport
// about once a second while it is queued or building, and no longer once the page is left.
import { useCallback, useEffect, useRef, useState } from "preact/hooks";

import type { Date as DateMessage } from "../../src/gen/goals/v1/common_pb.js";
import type { Export } from "../../src/gen/goals/v1/export_pb.js";
import { ExportState } from "../../src/gen/goals/v1/export_pb.js";
import { formatTime } from "../../embed/format.js";
import type { Problem } from "../api.js";
import { useApp } from "../app.js";
import type { Route } from "../router.js";
import { FieldError, fieldMessage, ProblemBanner } from "../ui/problem.js";

/** How often a queued or building job is read again. */
export const POLL_MS = 1000;
const PAGE_SIZE = 20;
const DEFAULT_DAYS = 30;

interface GoalOption {
  id: string;
  name: string;
}

const STATE_WORDS: Record<ExportState, string> = {
  [ExportState.UNSPECIFIED]: "Unknown",
  [ExportState.QUEUED]: "Queued",
  [ExportState.BUILDING]: "Building",
  [ExportState.MAILED]: "Mailed",
  [ExportState.FAILED]: "Failed",
};

function pending(job: Export): boolean {
  return job.state === ExportState.QUEUED || job.state === ExportState.BUILDING;
}

function pad(n: number): string {
  return String(n).padStart(2, "0");
}

/** A day as an `<input type="date">` writes it. */
function isoDay(day: Date): string {
  return `${day.getFullYear()}-${pad(day.getMonth() + 1)}-${pad(day.getDate())}`;
}

/** `2026-11-30` as a Date message; undefined when empty or malformed (the server then says
 * the field is required, by name). */
function dateMessage(value: string): DateMessage | undefined {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value);
  if (!match) {
    return undefined;
  }
  return {
    $typeName: "goals.v1.Date", year: Number(match[1]), month: Number(match[2]),
    day: Number(match[3]),
  };
}

function showDate(date: DateMessage | undefined): string {
  return date ? `${date.year}-${pad(date.month)}-${pad(date.day)}` : "—";
}

function showBytes(size: bigint): string {
  const bytes = Number(size);
  if (bytes < 1024) {
    return `${bytes} B`;
  }
  if (bytes < 1024 * 1024) {
    return `${(bytes / 1024).toFixed(1)} KB`;
  }
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

/** A random (version 4) UUID; `crypto.randomUUID` exists only on secure origins. */
export function newRequestId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20),
    hex.slice(20)].join("-");
}

function StateBadge({ job }: { job: Export }) {
  const words = STATE_WORDS[job.state] ?? "Unknown";
  return <span class={`badge export-${words.toLowerCase()}`}>{words}</span>;
}

function ExportForm({ goals, onRequested }: {
  goals: GoalOption[];
  onRequested(job: Export): void;
}) {
  const { api, fail } = useApp();
  const today = new Date();
  const from = new Date(today.getFullYear(), today.getMonth(), today.getDate() - (DEFAULT_DAYS - 1));
  const [goalId, setGoalId] = useState("");
  const [start, setStart] = useState(isoDay(from));
  const [end, setEnd] = useState(isoDay(today));
  const [email, setEmail] = useState("");
  const [problem, setProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);
  // The key of the submission in flight or last failed; a new one once the form changes.
  const requestId = useRef<string | null>(null);
  const inFlight = useRef(false);
  const chosen = goalId || goals[0]?.id || "";

  const edited = (set: (value: string) => void) => (event: Event) => {
    requestId.current = null;
    set((event.currentTarget as HTMLInputElement | HTMLSelectElement).value);
  };

  const submit = async (event: Event) => {
    event.preventDefault();
    if (inFlight.current) {
      return; // a second click before the first answer: the same submission
    }
    inFlight.current = true;
    requestId.current ??= newRequestId();
    setBusy(true);
    setProblem(null);
    try {
      const answer = await api.exports.requestExport({
        goalId: chosen,
        startDate: dateMessage(start),
        endDate: dateMessage(end),
        recipientEmail: email,
        requestId: requestId.current,
      });
      requestId.current = null;
      if (answer.export) {
        onRequested(answer.export);
      }
    } catch (err: unknown) {
      const found = fail(err, true);
      if (found.kind !== "unavailable") {
        requestId.current = null; // refused: nothing was recorded under this key
      }
      setProblem(found);
    } finally {
      inFlight.current = false;
      setBusy(false);
    }
  };

  const invalid = (field: string) => (fieldMessage(problem, field) ? "true" : undefined);
  const fieldNamed = problem?.kind === "invalid" &&
    ["goal_id", "start_date", "end_date", "recipient_email"].some((f) => fieldMessage(problem, f));
  return (
    <form class="card export-form" onSubmit={submit} aria-labelledby="export-form-title" noValidate>
      <h2 id="export-form-title">Request an export</h2>
      <p class="hint">
        The goal's conversions between the two days (in the account's time zone) are built
        into a zipped CSV; the recipient gets a link valid for 14 days.
      </p>
      <div class="export-fields">
        <div>
          <label for="export-goal">Goal</label>
          <select id="export-goal" value={chosen} onChange={edited(setGoalId)}
            aria-invalid={invalid("goal_id")}
            aria-describedby={invalid("goal_id") ? "export-goal-error" : undefined}>
            {goals.map((goal) => <option value={goal.id}>{goal.name}</option>)}
          </select>
          <FieldError id="export-goal-error" message={fieldMessage(problem, "goal_id")} />
        </div>
        <div>
          <label for="export-start">First day</label>
          <input id="export-start" type="date" value={start} onInput={edited(setStart)}
            aria-invalid={invalid("start_date")}
            aria-describedby={invalid("start_date") ? "export-start-error" : undefined} />
          <FieldError id="export-start-error" message={fieldMessage(problem, "start_date")} />
        </div>
        <div>
          <label for="export-end">Last day</label>
          <input id="export-end" type="date" value={end} onInput={edited(setEnd)}
            aria-invalid={invalid("end_date")}
            aria-describedby={invalid("end_date") ? "export-end-error" : undefined} />
          <FieldError id="export-end-error" message={fieldMessage(problem, "end_date")} />
        </div>
        <div>
          <label for="export-email">Recipient e-mail</label>
          <input id="export-email" type="email" autocomplete="email" value={email}
            onInput={edited(setEmail)} aria-invalid={invalid("recipient_email")}
            aria-describedby={invalid("recipient_email") ? "export-email-error" : undefined} />
          <FieldError id="export-email-error" message={fieldMessage(problem, "recipient_email")} />
        </div>
      </div>
      {!fieldNamed && <ProblemBanner problem={problem} />}
      <button type="submit" disabled={busy || goals.length === 0}>
        {busy ? "Requesting…" : "Request export"}
      </button>
    </form>
  );
}

/** The job just requested, read again every second until it is mailed or failed. */
function JobStatus({ job, problem }: { job: Export; problem: Problem | null }) {
  return (
    <section class="card export-job" aria-labelledby="export-job-title">
      <h2 id="export-job-title">Your export</h2>
      <p role="status">
        {job.goalName || job.goalId}, {showDate(job.startDate)} to {showDate(job.endDate)}, for{" "}
        {job.recipientEmail}: <StateBadge job={job} />
        {pending(job) && <span class="hint"> (checking every second)</span>}
      </p>
      <dl class="export-facts">
        <div><dt>Rows</dt><dd>{pending(job) ? "—" : String(job.rowCount)}</dd></div>
        <div><dt>Size</dt><dd>{pending(job) ? "—" : showBytes(job.sizeBytes)}</dd></div>
        <div><dt>Mailed at</dt><dd>{formatTime(job.mailTime)}</dd></div>
        {job.downloadUrl && (
          <div><dt>Link</dt><dd><a href={job.downloadUrl}>Download</a>
            {" "}(expires {formatTime(job.linkExpireTime)})</dd></div>
        )}
      </dl>
      {job.error && <p class="field-error">Failed: {job.error}</p>}
      <ProblemBanner problem={problem} />
    </section>
  );
}

function PastExports({ jobs, more, loading, problem, onMore }: {
  jobs: Export[];
  more: boolean;
  loading: boolean;
  problem: Problem | null;
  onMore(): void;
}) {
  return (
    <section aria-labelledby="past-exports-title">
      <h2 id="past-exports-title">Past exports</h2>
      {jobs.length === 0 && !loading && !problem && <p class="hint">No exports yet.</p>}
      {jobs.length > 0 && (
        <div class="table-wrap">
          <table class="exports-table">
            <caption class="visually-hidden">Exports, newest first</caption>
            <thead>
              <tr>
                <th scope="col">Requested</th><th scope="col">Goal</th><th scope="col">Days</th>
                <th scope="col">Recipient</th><th scope="col">State</th>
                <th scope="col" class="num">Rows</th><th scope="col" class="num">Size</th>
                <th scope="col">Mailed at</th><th scope="col">Link or error</th>
              </tr>
            </thead>
            <tbody>
              {jobs.map((job) => (
                <tr key={job.id} data-export-id={job.id}>
                  <td>{formatTime(job.createTime)}</td>
                  <td class="wrap">{job.goalName || job.goalId}</td>
                  <td>{showDate(job.startDate)} to {showDate(job.endDate)}</td>
                  <td class="wrap">{job.recipientEmail}</td>
                  <td><StateBadge job={job} /></td>
                  <td class="num">{pending(job) ? "—" : String(job.rowCount)}</td>
                  <td class="num">{pending(job) ? "—" : showBytes(job.sizeBytes)}</td>
                  <td>{formatTime(job.mailTime)}</td>
                  <td class="wrap">
                    {job.downloadUrl ? <a href={job.downloadUrl}>Download</a> : job.error || ""}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <ProblemBanner problem={problem} onRetry={onMore} />
      {loading && <p class="hint" role="status">Loading exports…</p>}
      {more && !loading && (
        <button type="button" class="secondary load-more" onClick={onMore}>Load more</button>
      )}
    </section>
  );
}

function useGoals(): { goals: GoalOption[] | null; problem: Problem | null; reload(): void } {
  const { api, fail } = useApp();
  const [goals, setGoals] = useState<GoalOption[] | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [attempt, setAttempt] = useState(0);
  useEffect(() => {
    const abort = new AbortController();
    const load = async () => {
      const found: GoalOption[] = [];
      let pageToken = "";
      do {
        const page = await api.config.listGoals({ pageSize: 200, pageToken },
          { signal: abort.signal });
        for (const summary of page.goals) {
          if (summary.goal) {
            found.push({ id: summary.goal.id, name: summary.goal.name });
          }
        }
        pageToken = page.nextPageToken;
      } while (pageToken);
      return found;
    };
    setProblem(null);
    load().then(setGoals, (err: unknown) => {
      if (!abort.signal.aborted) {
        setProblem(fail(err));
      }
    });
    return () => abort.abort();
  }, [api, fail, attempt]);
  return { goals, problem, reload: () => setAttempt((n) => n + 1) };
}

function usePastExports() {
  const { api, fail } = useApp();
  const [jobs, setJobs] = useState<Export[]>([]);
  const [nextToken, setNextToken] = useState("");
  const [loading, setLoading] = useState(true);
  const [problem, setProblem] = useState<Problem | null>(null);
  const alive = useRef(true);
  useEffect(() => () => { alive.current = false; }, []);

  const load = useCallback(async (pageToken: string) => {
    setLoading(true);
    setProblem(null);
    try {
      const page = await api.exports.listExports({ pageSize: PAGE_SIZE, pageToken });
      if (!alive.current) {
        return;
      }
      setJobs((shown) => {
        const known = new Set(shown.map((job) => job.id));
        return [...shown, ...page.exports.filter((job) => !known.has(job.id))];
      });
      setNextToken(page.nextPageToken);
    } catch (err: unknown) {
      if (alive.current) {
        setProblem(fail(err));
      }
    } finally {
      if (alive.current) {
        setLoading(false);
      }
    }
  }, [api, fail]);

  useEffect(() => { void load(""); }, [load]);

  /** A job requested or read again: replaces its row, or goes first (newest). */
  const upsert = useCallback((job: Export) => {
    setJobs((shown) => shown.some((j) => j.id === job.id)
      ? shown.map((j) => (j.id === job.id ? job : j))
      : [job, ...shown]);
  }, []);

  const more = () => { void load(nextToken); };
  return { jobs, more: nextToken !== "", loading, problem, loadMore: more, upsert };
}

export function ExportsPage(_props: { route: Route }) {
  const { api, fail } = useApp();
  const goals = useGoals();
  const past = usePastExports();
  const { upsert } = past;
  const [job, setJob] = useState<Export | null>(null);
  const [pollProblem, setPollProblem] = useState<Problem | null>(null);
  const [retry, setRetry] = useState(0);

  const requested = (fresh: Export) => {
    setPollProblem(null);
    setJob(fresh);
    upsert(fresh);
  };

  // Follow the job while it is queued or building: one read a second after the last
  // answer, none after the page is left (the timer is cleared, a read in flight aborted).
  useEffect(() => {
    if (job === null || !pending(job)) {
      return;
    }
    const abort = new AbortController();
    const timer = setTimeout(() => {
      api.exports.getExport({ exportId: job.id }, { signal: abort.signal }).then((answer) => {
        if (answer.export) {
          setPollProblem(null);
          setJob(answer.export);
          upsert(answer.export);
        }
      }, (err: unknown) => {
        if (abort.signal.aborted) {
          return;
        }
        const found = fail(err);
        setPollProblem(found);
        if (found.kind === "unavailable") {
          setRetry((n) => n + 1); // keep following once the service is back
        }
      });
    }, POLL_MS);
    return () => {
      clearTimeout(timer);
      abort.abort();
    };
  }, [api, fail, upsert, job, retry]);

  return (
    <section class="exports-page">
      <h1>Exports</h1>
      <ProblemBanner problem={goals.problem} onRetry={goals.reload} />
      {goals.goals === null && !goals.problem && <p class="hint" role="status">Loading goals…</p>}
      {goals.goals !== null && goals.goals.length === 0 && (
        <p class="notice">There are no goals to export yet: <a href="#/goals/new">create one</a>.</p>
      )}
      {goals.goals !== null && goals.goals.length > 0 && (
        <ExportForm goals={goals.goals} onRequested={requested} />
      )}
      {job && <JobStatus job={job} problem={pollProblem} />}
      <PastExports jobs={past.jobs} more={past.more} loading={past.loading}
        problem={past.problem} onMore={past.loadMore} />
    </section>
  );
}
