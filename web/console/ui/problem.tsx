// A failure shown in words where it happened (role="alert": screen readers announce it).
import type { Problem } from "../api.js";

export function ProblemBanner({ problem, onRetry }: {
  problem: Problem | null;
  onRetry?: () => void;
}) {
  if (problem === null) {
    return null;
  }
  return (
    <div class={`problem problem-${problem.kind}`} role="alert" data-problem={problem.kind}>
      <span>{problem.message}</span>
      {onRetry && problem.kind === "unavailable" && (
        <button type="button" onClick={onRetry}>Try again</button>
      )}
    </div>
  );
}

/** The message of `problem` when it names `field` (or a field inside it), else null. */
export function fieldMessage(problem: Problem | null, field: string): string | null {
  if (problem === null || problem.kind !== "invalid") {
    return null;
  }
  const named = problem.field;
  if (named === field || named.startsWith(`${field}[`) || named.startsWith(`${field}.`)) {
    return problem.message;
  }
  return null;
}

/** A field's message under its input (`id`: what the input's aria-describedby names);
 * nothing without one. `alert`: also announced as it appears. */
export function FieldError({ id, message, alert = false }: {
  id: string;
  message: string | null;
  alert?: boolean;
}) {
  return message ? <p class="field-error" id={id} role={alert ? "alert" : undefined}>{message}</p>
    : null;
}
