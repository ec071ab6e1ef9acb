// bootforge's pages: the jobs page reloads while a job is live; a job page
// streams its log (Server-Sent Events, resumed by the browser from the last
// byte it got) and refreshes its summary. Everything from a job is set as
// text, never as HTML.
"use strict";

(function () {
  const table = document.getElementById("jobs");
  if (table && table.dataset.refresh) {
    window.setTimeout(function () {
      window.location.reload();
    }, Number(table.dataset.refresh) * 1000);
  }

  const log = document.getElementById("log");
  const summary = document.getElementById("summary");
  if (!log || !summary) {
    return;
  }
  const state = document.getElementById("log-state");

  function atBottom() {
    return log.scrollTop + log.clientHeight >= log.scrollHeight - 40;
  }

  function text(id, value) {
    const element = document.getElementById(id);
    if (element) {
      element.textContent = value;
    }
  }

  function money(value) {
    return value === null || value === undefined ? "—" : "$" + value.toFixed(2);
  }

  function refresh() {
    return fetch(summary.dataset.status, { headers: { Accept: "application/json" } })
      .then(function (answer) {
        return answer.ok ? answer.json() : null;
      })
      .then(function (job) {
        if (!job) {
          return;
        }
        text("outcome", job.outcome || "—");
        document.getElementById("outcome").className = "outcome outcome-" + (job.outcome || job.phase);
        text("phase", job.phase + (job.phase_seconds === null ? "" : " for " + job.phase_seconds + "s"));
        text("exit-code", job.exit_code === null ? "—" : String(job.exit_code));
        text("instance", (job.instance_id || "—") + " " + (job.instance_state || ""));
        text("cost", money(job.run_cost_so_far === null ? job.cost_so_far : job.run_cost_so_far));
        text("message", job.status && job.status.message ? job.status.message : "");
        if (job.phase === "ended") {
          const button = document.getElementById("terminate");
          if (button) {
            button.closest("form").remove();
          }
        }
      })
      .catch(function () {});
  }

  const events = new EventSource(log.dataset.events);
  events.addEventListener("log", function (event) {
    const follow = atBottom();
    log.append(document.createTextNode(event.data + "\n"));
    if (follow) {
      log.scrollTop = log.scrollHeight;
    }
  });
  events.addEventListener("skipped", function () {
    document.getElementById("skipped").hidden = false;
  });
  events.addEventListener("problem", function (event) {
    state.textContent = event.data;
  });
  events.addEventListener("end", function () {
    events.close();
    state.textContent = "The run has ended.";
    refresh();
  });
  const summaries = window.setInterval(function () {
    if (events.readyState === EventSource.CLOSED) {
      window.clearInterval(summaries);
    }
    refresh();
  }, 5000);
})();
