/* recommender: records product views and clicks on recommendation links.
 *   <div data-rec-view="ITEM_PK" data-rec-context="product">   -> a "view" on page load
 *   <a data-rec-click="ITEM_PK" data-rec-context="home:trending"> -> a "click" when followed
 * Loaded by {% recommender_script %}, which passes the endpoint and CSRF token. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !window.fetch) { return; }
  var endpoint = script.getAttribute("data-endpoint");
  var csrf = script.getAttribute("data-csrf");

  function send(events) {
    if (!events.length) { return; }
    var headers = { "Content-Type": "application/json" };
    if (csrf) { headers["X-CSRFToken"] = csrf; }
    fetch(endpoint, {
      method: "POST",
      credentials: "same-origin",
      keepalive: true, // the request survives the page being left after a click
      headers: headers,
      body: JSON.stringify(events.length === 1 ? events[0] : { events: events })
    }).catch(function () { /* tracking never breaks the page */ });
  }

  function eventFor(el, type, attr) {
    return { item: el.getAttribute(attr), event: type, context: el.getAttribute("data-rec-context") || "" };
  }

  function recordViews() {
    var seen = {};
    var events = [];
    document.querySelectorAll("[data-rec-view]").forEach(function (el) {
      var key = el.getAttribute("data-rec-view");
      if (!seen[key]) { seen[key] = true; events.push(eventFor(el, "view", "data-rec-view")); }
    });
    send(events.slice(0, 500));
  }

  document.addEventListener("click", function (e) {
    var link = e.target.closest && e.target.closest("[data-rec-click]");
    if (link) { send([eventFor(link, "click", "data-rec-click")]); }
  }, true);

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", recordViews);
  } else {
    recordViews();
  }
})();
