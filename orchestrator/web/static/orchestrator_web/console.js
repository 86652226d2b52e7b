// The run page's live updates: poll the run's changing parts and swap them in, colour the graph's
// nodes, and send Pause / Resume / Cancel without leaving the page. No library, no network but
// this server.
(function () {
  "use strict";
  var root = document.getElementById("run");
  if (!root) { return; }
  var url = root.getAttribute("data-live");
  var parts = ["summary", "actions", "nodes", "timeline"];
  var timer = null;
  var INTERVAL = 700;

  function show(message, ok) {
    var flash = document.getElementById("flash");
    flash.innerHTML = "";
    var p = document.createElement("p");
    p.className = "flash " + (ok ? "success" : "error");
    p.textContent = message;
    flash.appendChild(p);
  }

  function colour(nodes) {
    var boxes = document.querySelectorAll("svg.graph .node");
    for (var i = 0; i < boxes.length; i++) {
      var box = boxes[i];
      var status = nodes[box.getAttribute("data-node")] || "pending";
      box.setAttribute("class", "node status-" + status.toLowerCase());
      var label = box.querySelector(".node-status");
      if (label) { label.textContent = nodes[box.getAttribute("data-node")] ? " · " + status.toLowerCase() : ""; }
    }
  }

  function apply(data) {
    for (var i = 0; i < parts.length; i++) {
      var el = document.getElementById(parts[i]);
      if (el && data.html[parts[i]] !== undefined) { el.innerHTML = data.html[parts[i]]; }
    }
    colour(data.nodes);
    root.setAttribute("data-status", data.status);
    root.setAttribute("data-terminal", data.terminal ? "1" : "0");
  }

  function poll() {
    clearTimeout(timer);
    fetch(url, { headers: { "X-Requested-With": "fetch" }, credentials: "same-origin" })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
      .then(function (data) {
        apply(data);
        if (!data.terminal) { timer = setTimeout(poll, INTERVAL); }
      })
      .catch(function () { timer = setTimeout(poll, INTERVAL * 4); });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.hasAttribute("data-async")) { return; }
    event.preventDefault();
    var buttons = form.querySelectorAll("button");
    for (var i = 0; i < buttons.length; i++) { buttons[i].disabled = true; }
    fetch(form.action, {
      method: "POST", body: new FormData(form), credentials: "same-origin",
      headers: { "X-Requested-With": "fetch" }
    })
      .then(function (r) { return r.json(); })
      .then(function (data) { show(data.message, data.ok); poll(); })
      .catch(function (err) { show("The change could not be sent: " + err, false); poll(); });
  });

  if (root.getAttribute("data-terminal") !== "1") { timer = setTimeout(poll, INTERVAL); }
})();
