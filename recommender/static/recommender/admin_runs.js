/* Live progress of training runs in the admin (the list and a run's page).

   Every 2 s, while the page shows a queued or running run, asks the admin's progress
   endpoint (data-progress-url on this script's tag) for those runs and updates their status
   badges ([data-run-status]) and progress bars ([data-run]). When a run finishes: on the
   list, its bar goes and its NDCG@10 and duration cells are filled; on the run's page,
   the page's form is fetched again and swapped in, so its metrics show without a reload. */
(function () {
  "use strict";
  var script = document.currentScript;
  var url = script && script.getAttribute("data-progress-url");
  var PENDING = ["queued", "running"];

  function pendingIds() {
    var ids = [];
    document.querySelectorAll("[data-run-status]").forEach(function (el) {
      if (PENDING.some(function (s) { return el.classList.contains("rec-" + s); })) {
        ids.push(el.getAttribute("data-run-status"));
      }
    });
    return ids;
  }

  function refreshForm() {
    var form = document.getElementById("trainingrun_form");
    if (!form) { return; }
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("trainingrun_form");
        if (fresh) { form.innerHTML = fresh.innerHTML; }
      });
  }

  function update(run) {
    var finished = PENDING.indexOf(run.status) < 0;
    document.querySelectorAll('[data-run-status="' + run.pk + '"]').forEach(function (badge) {
      badge.className = "rec-status rec-" + run.status;
      badge.textContent = run.status_display;
    });
    document.querySelectorAll('[data-run="' + run.pk + '"]').forEach(function (bar) {
      var row = bar.closest("tr");
      if (finished && row && document.getElementById("result_list")) {
        var cells = { ndcg: run.ndcg, duration_display: run.duration };
        Object.keys(cells).forEach(function (name) {
          var cell = row.querySelector(".field-" + name);
          if (cell) { cell.textContent = cells[name]; }
        });
        bar.remove();
        return;
      }
      bar.querySelector("progress").value = run.progress;
      bar.querySelector("small").textContent = run.progress_message;
    });
    return finished;
  }

  function poll() {
    var ids = pendingIds();
    if (!url || !ids.length) { return; }
    fetch(url + "?ids=" + ids.join(","), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (!r.ok) { throw new Error(r.status); }
        return r.json();
      })
      .then(function (data) {
        var finished = false;
        data.runs.forEach(function (run) { finished = update(run) || finished; });
        if (finished) { refreshForm(); }
        setTimeout(poll, 2000);
      })
      .catch(function () { setTimeout(poll, 10000); });  // a failed request: try again later
  }

  document.addEventListener("DOMContentLoaded", function () { setTimeout(poll, 2000); });
})();
