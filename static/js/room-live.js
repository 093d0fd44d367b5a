// The incident room's live updates (see incidents/live.py for the stream's side).
//
// htmx's SSE extension swaps timeline rows and the rollback panel as events arrive. This
// script adds what the extension does not do:
// - it remembers the last timeline entry shown, so that a reconnection (a new EventSource,
//   which sends no Last-Event-ID of its own) and the fallback polling resume right after it;
// - it drops an entry already on the page instead of showing it twice;
// - it appends step log lines as text, keeping at most MAX_LOG_LINES in the page, and
//   fetches lines a gap left out;
// - while the stream is down it says so and polls instead: every element with
//   data-poll-seconds gets a `backout:poll` event that often (its hx-trigger), the timeline
//   poller asking for the entries after the last one shown; once the stream is back, it
//   fetches again the parts of the room the missed events would have refreshed.
// No string is ever evaluated as code (no hx-trigger filters, no js: values): the console's
// Content-Security-Policy forbids it.
(function () {
  "use strict";

  const MAX_LOG_LINES = 1000;
  const live = { streaming: false, everOpened: false };
  window.backoutLive = live;

  function room() {
    return document.getElementById("room");
  }

  live.lastEntryId = function () {
    const rows = document.querySelectorAll("#timeline-rows > tr[id^='entry-']");
    return rows.length ? rows[rows.length - 1].id.slice("entry-".length) : "0";
  };

  // Poll only when the stream is down.
  live.polling = function () {
    return !live.streaming;
  };

  setInterval(function () {
    if (!live.polling()) return;
    const now = Date.now();
    for (const element of document.querySelectorAll("[data-poll-seconds]")) {
      const every = Number(element.dataset.pollSeconds) * 1000;
      if (!element.dataset.polledAt) element.dataset.polledAt = String(now);  // a period first
      if (now - Number(element.dataset.polledAt) < every) continue;
      element.dataset.polledAt = String(now);
      htmx.trigger(element, "backout:poll");
    }
  }, 500);

  document.addEventListener("htmx:configRequest", function (event) {
    if (event.detail.elt && event.detail.elt.id === "timeline-poller") {
      event.detail.parameters.after = live.lastEntryId();
    }
  });

  function say(text, down) {
    const status = document.getElementById("live-status");
    if (!status) return;
    status.textContent = text;
    status.classList.toggle("down", Boolean(down));
    status.classList.toggle("up", !down);
  }

  function resumeFromLastEntry() {
    // htmx re-creates a closed EventSource from this attribute: make it start after the
    // last entry on the page instead of the one the page was rendered with.
    const element = room();
    if (!element) return;
    const url = new URL(element.getAttribute("sse-connect"), window.location.href);
    url.searchParams.set("after", live.lastEntryId());
    element.setAttribute("sse-connect", url.pathname + url.search);
  }

  function earlierButton(log, before) {
    // "Earlier lines" for the window that now starts at `before` (htmx reads a button's
    // URL when it processes the button, so a new one is made rather than the old edited).
    for (const old of log.querySelectorAll(".log-earlier")) old.remove();
    if (before <= 1 || !log.dataset.logUrl) return;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "small log-earlier";
    button.textContent = "Earlier lines";
    button.setAttribute("hx-get", log.dataset.logUrl + "?before=" + before);
    button.setAttribute("hx-target", "this");
    button.setAttribute("hx-swap", "outerHTML");
    log.prepend(button);
    htmx.process(button);
  }

  function fillGap(log, last) {
    // Lines the stream did not carry (the page was polling, or the step's first event
    // held only its tail): fetch them, then append as if they had streamed.
    if (log.dataset.filling || !log.dataset.logUrl) return;
    log.dataset.filling = "1";
    fetch(log.dataset.logUrl + "?format=json&after=" + last, { credentials: "same-origin" })
      .then((response) => (response.ok ? response.json() : null))
      .then((payload) => {
        delete log.dataset.filling;
        if (payload && payload.lines.length) appendLog(payload);
      })
      .catch(() => delete log.dataset.filling);
  }

  function appendLog(payload) {
    const log = document.getElementById("log-" + payload.step);
    if (!log) return;
    let lines = log.querySelector(".log-lines:not(.earlier)");
    if (!lines) {
      lines = document.createElement("div");
      lines.className = "log-lines";
      log.appendChild(lines);
    }
    let last = Number(log.dataset.lastSeq || "0");
    const fresh = payload.lines.filter(([seq]) => seq > last);
    if (fresh.length && fresh[0][0] > last + 1) {
      fillGap(log, last);
      return; // the fetched lines bring these too
    }
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    const fragment = document.createDocumentFragment();
    for (const [seq, at, text] of fresh) {
      const line = document.createElement("div");
      line.className = "line";
      line.dataset.seq = seq;
      const time = document.createElement("time");
      time.textContent = at;
      line.append(time, " " + text);
      fragment.appendChild(line);
      last = seq;
    }
    lines.appendChild(fragment);
    log.dataset.lastSeq = String(last);
    // A window, not the whole log: older lines stay one "Earlier lines" click away.
    const shown = log.querySelectorAll(".line");
    if (shown.length > MAX_LOG_LINES) {
      const cut = shown.length - MAX_LOG_LINES;
      for (let i = 0; i < cut; i++) shown[i].remove();
      for (const page of log.querySelectorAll(".log-lines.earlier:empty")) page.remove();
      earlierButton(log, Number(shown[cut].dataset.seq));
    }
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  function refreshAfterOutage() {
    // Entries polled while the stream was down are not replayed, so the parts of the room
    // they would have refreshed are fetched again, and each step log catches up.
    for (const [id, name] of [["headline", "sse:header"], ["checklists", "sse:checklists"],
                              ["approvals", "sse:approvals"], ["recovery", "sse:entry"]]) {
      const element = document.getElementById(id);
      if (element) htmx.trigger(element, name);
    }
    // Into the wrapper, never the panel itself: the stream may replace the panel before the
    // answer comes, and swapping into a detached panel makes htmx drop the preserved logs.
    const runs = document.getElementById("runs");
    if (runs) htmx.ajax("GET", runs.getAttribute("hx-get"), { target: "#runs-live", swap: "innerHTML" });
    for (const log of document.querySelectorAll(".log[data-step]")) {
      fillGap(log, Number(log.dataset.lastSeq || "0"));
    }
  }

  document.addEventListener("htmx:sseOpen", function () {
    const wasDown = live.everOpened && !live.streaming;
    live.streaming = true;
    live.everOpened = true;
    say("Live", false);
    if (wasDown) refreshAfterOutage();
  });

  document.addEventListener("htmx:sseError", function () {
    live.streaming = false;
    resumeFromLastEntry();
    say(
      live.everOpened
        ? "Live updates interrupted: reconnecting. The page checks for news every few seconds meanwhile."
        : "Live updates unavailable: the page checks for news every few seconds.",
      true,
    );
  });

  document.addEventListener("htmx:sseBeforeMessage", function (event) {
    const message = event.detail;
    if (message.type === "log") {
      event.preventDefault();
      appendLog(JSON.parse(message.data));
    } else if (message.type === "entry" && message.lastEventId) {
      if (document.getElementById("entry-" + message.lastEventId)) event.preventDefault();
    }
  });

  // Rows fetched by polling can overlap what the stream already showed: keep the first.
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "timeline-rows") {
      const seen = new Set();
      for (const row of document.querySelectorAll("#timeline-rows > tr[id^='entry-']")) {
        if (seen.has(row.id)) row.remove();
        else seen.add(row.id);
      }
    }
  });
})();
