// Callbridge wallboard: the big-number board, and the core the supervisor view builds on.
//
// Contract: supervision/http.py. /ws/wallboard sends frames {type: "wallboard", ...}:
// each is the whole picture (queues, operators, live_calls, alerts, spies, activity,
// thresholds, alert_sound, pbx, pbxes, clocks, timezone, timezones, at = the PBX's clock), the
// first one at once. Timers and the clock run on the page between frames from `at` and `clocks`
// (each PBX's time, never the browser's own), times of day shown in `timezone` (the shown PBX's
// zone: `timezones` has each PBX's).
// Several PBXes (`pbxes` lists more than one): every item names its `pbx` (queue names and
// extensions are per PBX); a PBX picker shows one PBX or all (remembered; `?pbx=ID` in the
// page's address picks one), and a lost PBX is named. With one PBX none of that shows. Actions are JSON POSTs with the session's CSRF
// token (GET /api/session). The DOM, session, POST and socket helpers are window.Callbridge
// (common.js, loaded first).
//
// Safety rule: every string from the server (caller names above all) is data. It reaches
// the page through textContent / text nodes only, never innerHTML.
"use strict";

(() => {
  const SOUND_KEY = "callbridge.wallboard.sound";
  const PBX_KEY = "callbridge.wallboard.pbx";
  const STATUS_LABELS = {
    available: "Available",
    ringing: "Ringing",
    talking: "Talking",
    after_call: "After-call work",
    paused: "Paused",
    offline: "Offline",
  };
  const SLA_GOOD = 80; // answered-in-target below this percentage shows as trouble

  const app = {
    frame: null,
    offset: 0, // the (first shown) PBX's clock minus ours, from the last frame
    offsets: {}, // each PBX's clock minus ours
    pbxChoice: "", // the PBX shown ("": every PBX)
    multi: false, // several PBXes: items show their PBX
    lostText: null, // the banner's own words (one PBX)
    receivedAt: 0, // our clock (ms) when the last frame came
    socket: null, // Callbridge.liveSocket on /ws/wallboard
    handlers: [],
    alertKeys: null, // alerts on screen (queue|kind), to sound only new ones
    soundWanted: null, // null until the first frame says the default
    audio: null,
  };

  const { $, el, setChildren, formatDuration } = window.Callbridge;

  // ---- time -------------------------------------------------------------------------

  const pbxNow = (pbx) => Date.now() / 1000 + (pbx && pbx in app.offsets ? app.offsets[pbx] : app.offset);

  // Times of day in the call centre's zone (the frame's `timezone`), not the browser's.
  let timeFormat = null;
  function setZone(zone) {
    if (timeFormat && timeFormat.zone === zone) return;
    try {
      timeFormat = { zone, fmt: new Intl.DateTimeFormat("en-GB", { timeZone: zone || undefined,
        hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" }) };
    } catch {
      timeFormat = { zone, fmt: new Intl.DateTimeFormat("en-GB", { hour: "2-digit", minute: "2-digit",
        second: "2-digit", hourCycle: "h23" }) };
    }
  }

  function fmtTime(epoch) {
    if (!timeFormat) setZone(null);
    return timeFormat.fmt.format(new Date(epoch * 1000));
  }

  // A timer counting up from a PBX time (talking since ...), on that PBX's clock.
  function since(epoch, cls, pbx) {
    const attrs = { class: `timer ${cls || ""}`, "data-since": epoch };
    if (pbx) attrs["data-pbx"] = pbx;
    return el("span", attrs, formatDuration(pbxNow(pbx) - epoch));
  }

  // A duration the frame gave, running on while `running` (a wait, a call's length).
  function running(seconds, isRunning, cls) {
    const attrs = { class: `timer ${cls || ""}` };
    if (isRunning) {
      attrs["data-base"] = seconds;
      attrs["data-at"] = app.receivedAt;
    }
    return el("span", attrs, formatDuration(seconds));
  }

  function tick() {
    for (const node of document.querySelectorAll("[data-since]")) {
      node.textContent = formatDuration(pbxNow(node.dataset.pbx) - Number(node.dataset.since));
    }
    for (const node of document.querySelectorAll("[data-base]")) {
      const elapsed = (Date.now() - Number(node.dataset.at)) / 1000;
      node.textContent = formatDuration(Number(node.dataset.base) + elapsed);
    }
    // The PBX's clock, as the timers and the activity list: one time on the whole page.
    const clock = $("clock");
    if (clock && app.frame) clock.textContent = fmtTime(pbxNow());
  }

  // ---- frames from /ws/wallboard ----------------------------------------------------------

  function onMessage(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (!frame || frame.type !== "wallboard") return;
    app.socket.connected();
    app.full = frame;
    app.receivedAt = Date.now();
    const ours = Date.now() / 1000;
    app.offsets = Object.fromEntries(Object.entries(frame.clocks || {}).map(([pbx, at]) => [pbx, Number(at) - ours]));
    show();
  }

  // ---- several PBXes -------------------------------------------------------------------------

  // The frame as the picker shows it: one PBX's items, or every PBX's.
  function shown(frame) {
    const ids = (frame.pbxes || []).map((p) => p.id);
    app.multi = ids.length > 1;
    const pbx = app.multi && ids.includes(app.pbxChoice) ? app.pbxChoice : "";
    if (!pbx) return { ...frame, shownPbx: null };
    const mine = (items) => (items || []).filter((item) => item.pbx === pbx);
    const states = Object.fromEntries((frame.pbxes || []).map((p) => [p.id, p.state]));
    return { ...frame, shownPbx: pbx, queues: mine(frame.queues), operators: mine(frame.operators),
      live_calls: mine(frame.live_calls), alerts: mine(frame.alerts), spies: mine(frame.spies),
      activity: mine(frame.activity), pbx: states[pbx] || frame.pbx,
      at: (frame.clocks || {})[pbx] ?? frame.at, timezone: (frame.timezones || {})[pbx] ?? frame.timezone };
  }

  function show() {
    const frame = shown(app.full);
    app.frame = frame;
    app.offset = Number(frame.at) - Date.now() / 1000 || 0;
    setZone(frame.timezone);
    renderPicker(app.full);
    render(frame);
    for (const handler of app.handlers) handler(frame);
    tick();
  }

  function renderPicker(frame) {
    const pick = $("pbx-pick");
    if (!pick) return;
    pick.hidden = !app.multi;
    if (!app.multi) return;
    const select = $("pbx-select");
    const ids = (frame.pbxes || []).map((p) => p.id);
    const options = [["", "All PBXes"], ...ids.map((id) => [id, id])];
    if (select.options.length !== options.length || [...select.options].some((o, i) => o.value !== options[i][0])) {
      setChildren(select, options.map(([value, text]) => el("option", { value }, text)));
    }
    select.value = ids.includes(app.pbxChoice) ? app.pbxChoice : "";
  }

  function pickPbx(value) {
    app.pbxChoice = value;
    window.localStorage.setItem(PBX_KEY, value);
    app.alertKeys = null; // the alerts of the PBXes now shown are not news
    if (app.full) show();
  }

  // "b · support" where several PBXes are shown at once; the bare name otherwise.
  function withPbx(item, text) {
    return app.multi && !app.frame.shownPbx && item.pbx ? `${item.pbx} · ${text}` : text;
  }

  // ---- the board ----------------------------------------------------------------------

  function alertText(alert) {
    if (alert.kind === "callers_waiting") return `${alert.value} callers waiting (limit ${alert.limit})`;
    return `longest wait ${formatDuration(alert.value)} (limit ${formatDuration(alert.limit)})`;
  }

  function render(frame) {
    renderLost(frame);
    renderAlerts(frame);
    renderQueues(frame);
    if ($("agents")) renderAgents(frame);
  }

  // One PBX: the banner as written. Several: which of the shown PBXes are lost.
  function renderLost(frame) {
    const banner = $("pbx-lost");
    if (app.lostText === null) app.lostText = banner.textContent;
    const lost = (frame.pbxes || []).filter((p) => p.state === "lost" && (!frame.shownPbx || p.id === frame.shownPbx))
      .map((p) => p.id);
    banner.hidden = frame.pbx !== "lost";
    banner.textContent = !app.multi ? app.lostText
      : `Connection to PBX ${lost.join(", ")} lost — ${lost.length > 1 ? "their" : "its"} figures may be out of date`;
  }

  function renderAlerts(frame) {
    const alerts = frame.alerts || [];
    document.body.classList.toggle("in-alert", alerts.length > 0);
    setChildren(
      $("alerts"),
      alerts.map((a) =>
        el("p", { class: "alert", "data-queue": a.queue, "data-kind": a.kind, "data-pbx": a.pbx || "" },
          el("span", { class: "alert-queue" }, withPbx(a, a.queue)),
          el("span", { class: "alert-what" }, alertText(a)),
          el("span", { class: "alert-since" }, "for ", since(a.since, "", a.pbx))),
      ),
    );
    const first = alerts[0];
    const base = document.body.classList.contains("page-supervisor") ? "Callbridge supervisor" : "Callbridge wallboard";
    document.title = first ? `(!) ${withPbx(first, first.queue)}: ${alertText(first)} — ${base}` : base;
    const keys = new Set(alerts.map((a) => `${a.pbx}|${a.queue}|${a.kind}`));
    const fresh = app.alertKeys !== null && [...keys].some((k) => !app.alertKeys.has(k));
    app.alertKeys = keys;
    if (app.soundWanted === null) initSound(frame.alert_sound);
    if (fresh) beep();
  }

  function figure(value, caption, attrs) {
    return el("div", { class: "fig", ...(attrs || {}) },
      el("span", { class: "num" }, value),
      el("span", { class: "cap" }, caption));
  }

  function renderQueues(frame) {
    const alerts = frame.alerts || [];
    const target = Math.round(frame.target_seconds || 30);
    setChildren(
      $("queues"),
      (frame.queues || []).map((q) => {
        const mine = new Set(alerts.filter((a) => a.queue === q.name && a.pbx === q.pbx).map((a) => a.kind));
        const state = mine.size ? "alert" : q.waiting > 0 && q.free === 0 ? "warn" : "ok";
        const pct = q.answered_in_target_percent;
        const sla = pct === null || pct === undefined ? "—" : `${Math.round(pct)}%`;
        return el("article", { class: "queue", "data-queue": q.name, "data-pbx": q.pbx || "", "data-state": state },
          el("h2", { class: "queue-name" }, withPbx(q, q.name)),
          el("div", { class: "main-figures" },
            figure(String(q.waiting), "waiting", { "data-field": "waiting", "data-trouble": mine.has("callers_waiting") }),
            figure(running(q.longest_wait_seconds, q.waiting > 0), "longest wait",
              { "data-field": "longest", "data-trouble": mine.has("longest_wait") })),
          el("div", { class: "more-figures" },
            figure(`${q.free} / ${q.logged_in}`, "free / logged in",
              { "data-field": "free", "data-trouble": q.logged_in > 0 && q.free === 0 && q.waiting > 0 }),
            figure(sla, `answered ≤ ${target} s`, { "data-field": "sla", "data-trouble": pct !== null && pct < SLA_GOOD }),
            figure(String(q.calls_today), "calls today", { "data-field": "calls" }),
            figure(String(q.abandoned_today), "abandoned", { "data-field": "abandoned" })));
      }),
    );
  }

  function statusDetail(op) {
    if (op.status === "talking") {
      return [op.with_caller ? el("span", { class: "with" }, op.with_caller) : null,
        op.since ? since(op.since, "", op.pbx) : null];
    }
    if (op.status === "paused") return [el("span", { class: "reason" }, op.paused_reason || "no reason given")];
    if (op.status === "after_call" && op.since) return [since(op.since, "", op.pbx)];
    return [];
  }

  function renderAgents(frame) {
    setChildren(
      $("agents"),
      (frame.operators || []).map((op) =>
        el("article", { class: "agent", "data-status": op.status, "data-operator": op.operator, "data-pbx": op.pbx || "" },
          el("div", { class: "agent-name" }, op.name || op.operator, el("span", { class: "ext" }, withPbx(op, op.operator))),
          el("div", { class: "agent-status" }, STATUS_LABELS[op.status] || op.status),
          el("div", { class: "agent-detail" }, ...statusDetail(op)),
          el("div", { class: "agent-day" },
            `${op.calls_today} calls · avg ${op.average_talk_seconds === null ? "—" : formatDuration(op.average_talk_seconds)}`))),
    );
  }

  // ---- sound (generated: no audio files) ---------------------------------------------------

  function initSound(defaultOn) {
    const stored = window.localStorage.getItem(SOUND_KEY);
    app.soundWanted = stored === null ? Boolean(defaultOn) : stored === "on";
    showSound();
  }

  function showSound() {
    const button = $("sound");
    const unlocked = app.audio && app.audio.state === "running";
    button.setAttribute("aria-pressed", app.soundWanted ? "true" : "false");
    button.textContent = !app.soundWanted ? "Sound off" : unlocked ? "Sound on" : "Enable sound";
  }

  // Browsers start audio only after a click: the button is that click.
  function toggleSound() {
    const unlocked = app.audio && app.audio.state === "running";
    app.soundWanted = app.soundWanted && unlocked ? false : true;
    window.localStorage.setItem(SOUND_KEY, app.soundWanted ? "on" : "off");
    if (app.soundWanted) {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      if (Ctx && !app.audio) app.audio = new Ctx();
      if (app.audio) app.audio.resume().then(() => { showSound(); beep(0.15); }, showSound);
    }
    showSound();
  }

  function beep(volume = 0.3) {
    const ctx = app.audio;
    if (!app.soundWanted || !ctx || ctx.state !== "running") return;
    const start = ctx.currentTime;
    [880, 660, 880].forEach((freq, i) => {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = "sine";
      osc.frequency.value = freq;
      const t = start + i * 0.22;
      gain.gain.setValueAtTime(0, t);
      gain.gain.linearRampToValueAtTime(volume, t + 0.02);
      gain.gain.linearRampToValueAtTime(0, t + 0.2);
      osc.connect(gain).connect(ctx.destination);
      osc.start(t);
      osc.stop(t + 0.21);
    });
  }

  // ---- start ----------------------------------------------------------------------------

  // What the supervisor view adds to the board (the rest it takes from window.Callbridge).
  window.Wallboard = {
    since,
    running,
    fmtTime,
    statusLabel: (status) => STATUS_LABELS[status] || status,
    withPbx,
    several: () => app.multi, // several PBXes exist (items then carry their PBX)
    onFrame: (handler) => {
      app.handlers.push(handler);
      if (app.frame) handler(app.frame);
    },
  };

  function start() {
    $("signout").addEventListener("click", window.Callbridge.signOut);
    $("sound").addEventListener("click", toggleSound);
    const asked = new URLSearchParams(window.location.search).get("pbx");
    app.pbxChoice = asked !== null ? asked : window.localStorage.getItem(PBX_KEY) || "";
    if ($("pbx-select")) $("pbx-select").addEventListener("change", (event) => pickPbx(event.target.value));
    window.setInterval(tick, 1000);
    tick();
    app.socket = window.Callbridge.liveSocket("/ws/wallboard", { onMessage, connectedText: "live" });
    app.socket.start();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
