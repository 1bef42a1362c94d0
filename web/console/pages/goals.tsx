// The goals page: the list (#/goals), a new goal (#/goals/new) and one goal (#/goals/<id>).
// Admins change goals; supervisors look.
import { useEffect, useState } from "preact/hooks";

import { useApp } from "../app.js";
import { go } from "../router.js";
import type { Route } from "../router.js";
import { GoalFormView } from "./goals/form.js";
import { GoalListView } from "./goals/list.js";

export function GoalsPage({ route }: { route: Route }) {
  // Kept across the page's routes: "created", "saved" shown on the list the form returns to.
  const [notice, setNotice] = useState<string | null>(null);
  const target = route.rest[0];
  useEffect(() => {
    if (target !== undefined) {
      setNotice(null); // a form opened: the last "saved" is old news
    }
  }, [target]);
  const { session } = useApp();
  if (target === "new" && session.role !== "admin") {
    return (
      <section>
        <h1>New goal</h1>
        <p>Only an admin can create goals. <a href="#/goals">Back to the goals</a></p>
      </section>
    );
  }
  if (target !== undefined) {
    const goalId = target === "new" ? null : target;
    return (
      <GoalFormView key={target} goalId={goalId}
        onSaved={(message) => { setNotice(message); go("goals"); }} />
    );
  }
  return <GoalListView notice={notice} onNotice={setNotice} />;
}
