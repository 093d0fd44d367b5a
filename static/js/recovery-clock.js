// Ticks the incident room's recovery clock once a second, without asking the server.
//
// The clock's start is the `datetime` attribute of its <time data-clock-since>; the server
// sends its own time in data-server-now, so a browser whose clock is off still counts from
// the server's view. htmx may swap the partial (and run this file again): one timer only.
(function () {
  "use strict";
  if (window.backoutRecoveryClock) {
    window.backoutRecoveryClock.tick();
    return;
  }

  var LABELS = { within: "within RTO", close: "close to RTO", over: "over RTO" };
  var CLASSES = { within: "state-succeeded", close: "state-running", over: "state-failed" };
  var offsets = new WeakMap();

  // Seconds as the server's `clock` filter writes them: 4:05, 1:02:09, -1:30.
  function clock(seconds) {
    var sign = seconds < 0 ? "-" : "";
    var rest = Math.abs(Math.trunc(seconds));
    var hours = Math.floor(rest / 3600);
    var minutes = Math.floor((rest % 3600) / 60);
    var secs = rest % 60;
    var ss = (secs < 10 ? "0" : "") + secs;
    if (hours) {
      return sign + hours + ":" + (minutes < 10 ? "0" : "") + minutes + ":" + ss;
    }
    return sign + minutes + ":" + ss;
  }

  // Server time minus browser time, measured once per rendered clock.
  function offset(holder) {
    if (!offsets.has(holder)) {
      var server = Date.parse(holder.getAttribute("data-server-now"));
      offsets.set(holder, isNaN(server) ? 0 : server - Date.now());
    }
    return offsets.get(holder);
  }

  function secondsSince(iso, holder) {
    var start = Date.parse(iso);
    if (isNaN(start)) {
      return null;
    }
    return Math.max(0, Math.floor((Date.now() + offset(holder) - start) / 1000));
  }

  function tickClock(root) {
    if (root.hasAttribute("data-stopped")) {
      return;
    }
    var since = root.querySelector("time[data-clock-since]");
    var elapsed = since && secondsSince(since.getAttribute("datetime"), root);
    if (elapsed === null) {
      return;
    }
    var rto = Number(root.getAttribute("data-rto-seconds"));
    var close = Number(root.getAttribute("data-close-seconds"));
    var state = elapsed > rto ? "over" : elapsed >= close ? "close" : "within";
    var shown = root.querySelector("[data-clock-elapsed]");
    var badge = root.querySelector("[data-clock-state]");
    var remaining = root.querySelector("[data-clock-remaining]");
    if (shown) {
      shown.textContent = clock(elapsed);
    }
    if (badge) {
      badge.textContent = LABELS[state];
      badge.className = "state " + CLASSES[state];
    }
    if (remaining) {
      remaining.textContent = state === "over" ? clock(elapsed - rto) + " over" : clock(rto - elapsed) + " left";
    }
    root.setAttribute("data-state", state);
  }

  function tick() {
    document.querySelectorAll("[data-recovery-clock]").forEach(tickClock);
    document.querySelectorAll("[data-running-since]").forEach(function (cell) {
      var holder = cell.closest("#recovery") || cell;
      var clockRoot = holder.querySelector("[data-recovery-clock]") || cell;
      var seconds = secondsSince(cell.getAttribute("data-running-since"), clockRoot);
      if (seconds === null) {
        return;
      }
      cell.textContent = clock(seconds);
      // A phase still under way that has already run past its target is missed.
      var target = Number(cell.getAttribute("data-target-seconds"));
      var row = cell.closest("tr");
      if (row && target && seconds > target) {
        row.classList.add("missed");
      }
    });
  }

  window.backoutRecoveryClock = { tick: tick, clock: clock };
  tick();
  window.setInterval(tick, 1000);
})();
