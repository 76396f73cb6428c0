// Callbridge wallboard: the big-number board, and the core the supervisor view builds on.
//
// Contract: screenpop/wallboard_http.py. /ws/wallboard sends frames {type: "wallboard", ...}:
// each is the whole picture (queues, operators, live_calls, alerts, spies, activity,
// thresholds, alert_sound, pbx, at = the PBX's clock), the first one at once. Timers run
// on the page between frames from `at`. Actions are JSON POSTs with the session's CSRF
// token (GET /api/session).
//
// Safety rule: every string from the server (caller names above all) is data. It reaches
// the page through textContent / text nodes only, never innerHTML.
"use strict";

(() => {
  const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 15000];
  const SOUND_KEY = "callbridge.wallboard.sound";
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
    offset: 0, // the PBX's clock minus ours, from the last frame
    receivedAt: 0, // our clock (ms) when the last frame came
    csrf: null,
    session: null,
    ws: null,
    attempt: 0,
    everConnected: false,
    handlers: [],
    sessionHandlers: [],
    alertKeys: null, // alerts on screen (queue|kind), to sound only new ones
    soundWanted: null, // null until the first frame says the default
    audio: null,
  };

  const $ = (id) => document.getElementById(id);

  // ---- DOM helpers (text only) ------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child); // a string becomes a Text node, never markup
    }
    return node;
  }

  function setChildren(node, children) {
    node.replaceChildren(...children.filter((c) => c !== null && c !== undefined && c !== false));
  }

  // Rebuild a node's content only when what it shows changed: buttons stay under the mouse.
  function update(node, signature, build) {
    const sig = JSON.stringify(signature);
    if (node.dataset.sig === sig) return;
    node.dataset.sig = sig;
    setChildren(node, build());
  }

  // ---- time -------------------------------------------------------------------------

  const pbxNow = () => Date.now() / 1000 + app.offset;

  function fmtDuration(seconds) {
    const s = Math.max(0, Math.floor(Number(seconds) || 0));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const pad = (n) => String(n).padStart(2, "0");
    return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
  }

  function fmtTime(epoch) {
    const d = new Date(epoch * 1000);
    const pad = (n) => String(n).padStart(2, "0");
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  // A timer counting up from a PBX time (talking since ...).
  function since(epoch, cls) {
    return el("span", { class: `timer ${cls || ""}`, "data-since": epoch }, fmtDuration(pbxNow() - epoch));
  }

  // A duration the frame gave, running on while `running` (a wait, a call's length).
  function running(seconds, isRunning, cls) {
    const attrs = { class: `timer ${cls || ""}` };
    if (isRunning) {
      attrs["data-base"] = seconds;
      attrs["data-at"] = app.receivedAt;
    }
    return el("span", attrs, fmtDuration(seconds));
  }

  function tick() {
    for (const node of document.querySelectorAll("[data-since]")) {
      node.textContent = fmtDuration(pbxNow() - Number(node.dataset.since));
    }
    for (const node of document.querySelectorAll("[data-base]")) {
      const elapsed = (Date.now() - Number(node.dataset.at)) / 1000;
      node.textContent = fmtDuration(Number(node.dataset.base) + elapsed);
    }
    const clock = $("clock");
    if (clock) clock.textContent = fmtTime(Date.now() / 1000);
  }

  // ---- session and HTTP ---------------------------------------------------------------

  function goToLogin() {
    const back = window.location.pathname + window.location.search;
    window.location.assign(`/login?next=${encodeURIComponent(back)}`);
  }

  async function loadSession() {
    const resp = await fetch("/api/session", { credentials: "same-origin", cache: "no-store" });
    if (resp.status === 401) {
      goToLogin();
      throw new Error("not signed in");
    }
    if (!resp.ok) throw new Error(`session: HTTP ${resp.status}`);
    app.session = await resp.json();
    app.csrf = app.session.csrf_token || null;
    for (const handler of app.sessionHandlers) handler(app.session);
    return app.session;
  }

  // POST JSON with the CSRF header; {status, body} whatever the status (the PBX's answer
  // or the refusal is shown as it came). One retry with a fresh token on a CSRF refusal.
  async function postJson(path, payload, retried = false) {
    if (!app.csrf) await loadSession();
    const resp = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": app.csrf || "" },
      body: JSON.stringify(payload),
    });
    let body = {};
    try {
      body = (await resp.json()) || {};
    } catch {
      body = { message: `HTTP ${resp.status}` };
    }
    if (resp.status === 403 && body.error === "csrf" && !retried) {
      await loadSession();
      return postJson(path, payload, true);
    }
    if (resp.status === 401) goToLogin();
    return { status: resp.status, body };
  }

  async function signOut() {
    try {
      await postJson("/logout", {});
    } finally {
      window.location.assign("/login");
    }
  }

  // ---- WebSocket ----------------------------------------------------------------------

  function setConnection(status) {
    document.body.dataset.conn = status;
    const text = { connecting: "connecting…", connected: "live", reconnecting: "reconnecting…" }[status];
    $("conn-text").textContent = text || status;
  }

  function connect() {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${window.location.host}/ws/wallboard`);
    app.ws = ws;
    ws.addEventListener("message", (event) => onMessage(event.data));
    ws.addEventListener("close", () => {
      if (app.ws === ws) scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    app.ws = null;
    const base = BACKOFF_MS[Math.min(app.attempt, BACKOFF_MS.length - 1)];
    app.attempt += 1;
    setConnection(app.everConnected ? "reconnecting" : "connecting");
    window.setTimeout(reconnect, base + Math.floor(Math.random() * base * 0.2));
  }

  async function reconnect() {
    try {
      await loadSession(); // an ended session goes to the login page, not round and round
    } catch {
      if (!app.ws) scheduleReconnect();
      return;
    }
    connect();
  }

  function onMessage(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (!frame || frame.type !== "wallboard") return;
    app.attempt = 0;
    app.everConnected = true;
    setConnection("connected");
    app.frame = frame;
    app.receivedAt = Date.now();
    app.offset = Number(frame.at) - Date.now() / 1000 || 0;
    render(frame);
    for (const handler of app.handlers) handler(frame);
    tick();
  }

  // ---- the board ----------------------------------------------------------------------

  function alertText(alert) {
    if (alert.kind === "callers_waiting") return `${alert.value} callers waiting (limit ${alert.limit})`;
    return `longest wait ${fmtDuration(alert.value)} (limit ${fmtDuration(alert.limit)})`;
  }

  function render(frame) {
    $("pbx-lost").hidden = frame.pbx !== "lost";
    renderAlerts(frame);
    renderQueues(frame);
    if ($("agents")) renderAgents(frame);
  }

  function renderAlerts(frame) {
    const alerts = frame.alerts || [];
    document.body.classList.toggle("in-alert", alerts.length > 0);
    setChildren(
      $("alerts"),
      alerts.map((a) =>
        el("p", { class: "alert", "data-queue": a.queue, "data-kind": a.kind },
          el("span", { class: "alert-queue" }, a.queue),
          el("span", { class: "alert-what" }, alertText(a)),
          el("span", { class: "alert-since" }, "for ", since(a.since))),
      ),
    );
    const first = alerts[0];
    const base = document.body.classList.contains("page-supervisor") ? "Callbridge supervisor" : "Callbridge wallboard";
    document.title = first ? `(!) ${first.queue}: ${alertText(first)} — ${base}` : base;
    const keys = new Set(alerts.map((a) => `${a.queue}|${a.kind}`));
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
        const mine = new Set(alerts.filter((a) => a.queue === q.name).map((a) => a.kind));
        const state = mine.size ? "alert" : q.waiting > 0 && q.free === 0 ? "warn" : "ok";
        const pct = q.answered_in_target_percent;
        const sla = pct === null || pct === undefined ? "—" : `${Math.round(pct)}%`;
        return el("article", { class: "queue", "data-queue": q.name, "data-state": state },
          el("h2", { class: "queue-name" }, q.name),
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
      return [op.with_caller ? el("span", { class: "with" }, op.with_caller) : null, op.since ? since(op.since) : null];
    }
    if (op.status === "paused") return [el("span", { class: "reason" }, op.paused_reason || "no reason given")];
    if (op.status === "after_call" && op.since) return [since(op.since)];
    return [];
  }

  function renderAgents(frame) {
    setChildren(
      $("agents"),
      (frame.operators || []).map((op) =>
        el("article", { class: "agent", "data-status": op.status, "data-operator": op.operator },
          el("div", { class: "agent-name" }, op.name || op.operator, el("span", { class: "ext" }, op.operator)),
          el("div", { class: "agent-status" }, STATUS_LABELS[op.status] || op.status),
          el("div", { class: "agent-detail" }, ...statusDetail(op)),
          el("div", { class: "agent-day" },
            `${op.calls_today} calls · avg ${op.average_talk_seconds === null ? "—" : fmtDuration(op.average_talk_seconds)}`))),
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

  window.Wallboard = {
    el,
    setChildren,
    update,
    since,
    running,
    fmtDuration,
    fmtTime,
    postJson,
    statusLabel: (status) => STATUS_LABELS[status] || status,
    onSession: (handler) => {
      app.sessionHandlers.push(handler);
      if (app.session) handler(app.session);
    },
    onFrame: (handler) => {
      app.handlers.push(handler);
      if (app.frame) handler(app.frame);
    },
  };

  async function start() {
    $("signout").addEventListener("click", signOut);
    $("sound").addEventListener("click", toggleSound);
    window.setInterval(tick, 1000);
    tick();
    try {
      await loadSession();
    } catch {
      scheduleReconnect();
      return;
    }
    connect();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
