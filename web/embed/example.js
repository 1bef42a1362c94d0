// The example workspace's code (example.html): mount goalflow's agent notice with the agent
// token and agent id from the page's fragment (#token=...&agent=...; optionally &edge=<the
// edge's origin> when this page is served from elsewhere: that origin must then be on the
// edge's GOALFLOW_CORS_ALLOWED_ORIGINS), and takes the fragment out of the address bar at
// once. A real workspace passes a function that asks its backend for a fresh token, so that
// an expired one is replaced:
//
//   token: () => fetch("/api/goalflow-token").then((reply) => reply.text())
(function () {
  "use strict";
  var params = new URLSearchParams(window.location.hash.replace(/^#/, ""));
  var token = params.get("token") || "";
  var agent = params.get("agent") || "";
  if (token) {
    // The token is read: out of the address bar and the history (it would be visible and
    // bookmarkable for its lifetime). A reload asks for it again.
    window.history.replaceState(null, "", window.location.pathname + window.location.search);
  }
  var problem = document.getElementById("example-problem");
  if (!token || !agent) {
    problem.textContent = "Open this page as example.html#token=<agent token>&agent=<agent id>.";
    problem.hidden = false;
    return;
  }
  var notice = window.GoalflowAgent.mount(document.getElementById("goalflow-notice"), {
    baseUrl: params.get("edge") || window.location.origin, // the edge serving this page
    agentId: agent,
    token: token,
  });
  window.addEventListener("pagehide", function () { notice.stop(); });
})();
