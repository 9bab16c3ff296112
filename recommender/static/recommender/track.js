/* recommender: records product views and clicks on recommendation links.
 *   <div data-rec-view="ITEM_PK" data-rec-context="product">   -> a "view" on page load
 *   <a data-rec-click="ITEM_PK" data-rec-context="home:trending"> -> a "click" when followed
 *   <section data-rec-impression="PK,PK,..." data-rec-context="trending:trending@RUN">
 *       -> one "impression" per item shown by a recommendation block, posted apart
 *          from the views so that a site without the event type loses only impressions
 * A block's links name the algorithm and training run that chose their item
 * ("similar_items:itemknn@42"); an impression and a click post that context as it is.
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

  function recordImpressions() {
    var events = [];
    document.querySelectorAll("[data-rec-impression]").forEach(function (block) {
      var blockContext = block.getAttribute("data-rec-context") || "";
      block.getAttribute("data-rec-impression").split(",").forEach(function (pk) {
        if (!pk) { return; }
        // each link names the algorithm that chose its item
        var link = block.querySelector('[data-rec-click="' + pk.replace(/"/g, "") + '"]');
        var context = (link && link.getAttribute("data-rec-context")) || blockContext;
        events.push({ item: pk, event: "impression", context: context });
      });
    });
    send(events.slice(0, 500));
  }

  function onLoad() {
    recordViews();
    recordImpressions();
  }

  document.addEventListener("click", function (e) {
    var link = e.target.closest && e.target.closest("[data-rec-click]");
    if (link) { send([eventFor(link, "click", "data-rec-click")]); }
  }, true);

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", onLoad);
  } else {
    onLoad();
  }
})();
