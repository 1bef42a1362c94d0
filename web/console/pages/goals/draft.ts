// The goal form's unsaved changes, kept in this tab (sessionStorage) while it is edited, so
// that a session that ends (its token expires, the services refuse it) does not take them
// with it: the same form opened again after signing in gets them back.
//
// One draft per form: "new" or the goal's id, of one account. It is written on every
// change, and forgotten when the form is saved, cancelled or left while signed in. It is
// given back only to a later session (signing in again): within the session it was written
// in, a reload shows the goal as the server holds it, as before.
import { loadSession } from "../../session.js";
import type { Session } from "../../session.js";
import type { GoalForm } from "./model.js";

const PREFIX = "goalflow.goal-draft";

export interface Draft {
  /** What the person had typed. */
  form: GoalForm;
  /** The form the changes were made against (an edit saves these changes only). */
  initial: GoalForm;
  /** The goal's revision the changes were made against (edits; "0" for a new goal). */
  revision: string;
}

interface Stored extends Draft {
  /** Which session wrote it (the tail of its token's signature, not the token). */
  session: string;
}

function keyOf(session: Session, route: string): string {
  // The key that minted the session too: the next person signing in to the account in this
  // tab with another key gets nothing of it.
  return `${PREFIX}.${session.accountId}.${session.mintedBy}.${route}`;
}

/** Forgets every draft of this tab: a deliberate sign-out leaves nothing for whoever
 * signs in next. */
export function forgetAllDrafts(): void {
  for (let i = window.sessionStorage.length - 1; i >= 0; i--) {
    const key = window.sessionStorage.key(i);
    if (key?.startsWith(`${PREFIX}.`)) {
      window.sessionStorage.removeItem(key);
    }
  }
}

function sessionMark(session: Session): string {
  return session.token.slice(-16);
}

/** Keeps `draft` for `route` ("new" or a goal id). */
export function keepDraft(session: Session, route: string, draft: Draft): void {
  const stored: Stored = { ...draft, session: sessionMark(session) };
  try {
    window.sessionStorage.setItem(keyOf(session, route), JSON.stringify(stored));
  } catch {
    // Storage full or refused: the form still works, it just does not survive a sign-in.
  }
}

export function forgetDraft(session: Session, route: string): void {
  window.sessionStorage.removeItem(keyOf(session, route));
}

function isForm(value: unknown): value is GoalForm {
  if (typeof value !== "object" || value === null) {
    return false;
  }
  const form = value as Record<string, unknown>;
  return typeof form["name"] === "string" && Array.isArray(form["groups"])
    && Array.isArray(form["conditions"]) && typeof form["active"] === "boolean";
}

/** The draft of `route` left by an earlier session (then given back once), or null. A
 * draft of this same session (a reload) is dropped: the page starts from the server. */
export function takeDraft(session: Session, route: string): Draft | null {
  const key = keyOf(session, route);
  const text = window.sessionStorage.getItem(key);
  if (text === null) {
    return null;
  }
  let stored: Partial<Stored> | null = null;
  try {
    stored = JSON.parse(text) as Partial<Stored>;
  } catch {
    stored = null;
  }
  if (stored === null || stored.session === sessionMark(session) || !isForm(stored.form)
    || !isForm(stored.initial) || typeof stored.revision !== "string") {
    window.sessionStorage.removeItem(key);
    return null;
  }
  return { form: stored.form, initial: stored.initial, revision: stored.revision };
}

/** Whether `session` is still the one signed in (leaving a form then discards its
 * draft; a form left because the session ended keeps it). */
export function stillSignedIn(session: Session): boolean {
  return loadSession()?.token === session.token;
}
