// The example workspace's code (example.html): mount goalflow's agent notice with the agent
// token and agent id from the page's fragment (#token=...&agent=...; optionally &edge=<the
// edge's origin> when this page is served from elsewhere: that origin must then be on the
// edge's GOALFLOW_CORS_ALLOWED_ORIGINS). A real workspace passes a function that asks its
// backend for a fresh token, so that an expired one is replaced:
//
//   token: () => fetch("/api/goalflow-token").then((reply) => reply.text())
(function () {
  "use strict";
  var params = new URLSearchParams(window.location.hash.replace(/^#/, ""));
  var token = params.get("token") || "";
  var agent = params.get("agent") || "";
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
