// The example workspace's code (example.html): mount goalflow's agent notice with the token
// and agent id from the page's fragment (#token=...&agent=...). A real workspace passes a
// function that asks its backend for a fresh token, so an expired one is replaced:
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
    baseUrl: window.location.origin, // the edge serving this page; another origin must be on
    agentId: agent,                  // its allow-list (GOALFLOW_CORS_ALLOWED_ORIGINS)
    token: token,
  });
  window.addEventListener("pagehide", function () { notice.stop(); });
})();
