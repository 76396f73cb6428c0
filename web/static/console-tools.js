// Callbridge operator console: the operator's own tools beside his cards (window.ConsoleTools).
//
// - his state in his queues (available / paused with the reason) and pause/unpause with a
//   reason from the configured list (POST /api/console/pause: QueuePause on his interfaces);
// - search the CRM by name or number (GET /api/console/search) and click-to-dial a result
//   or a history entry (POST /api/console/dial: the PBX rings his phone first);
// - the ring: a sound the operator switches on (WebAudio, no file) while a card rings, and
//   a desktop notification (the Notification API, permission asked once, on his first click).
//
// Same safety rule as console.js: every string from a CRM or the server is text.
"use strict";

(() => {
  const { $, el, setChildren, externalLink, getJson, postJson } = window.Callbridge;
  const SOUND_KEY = "callbridge.console.ringSound";
  const ASKED_KEY = "callbridge.console.notificationsAsked";
  const RING_EVERY_MS = 3000; // one double ring every 3 s, as a phone does

  const tools = { info: null, agent: null, ringTimer: null, audio: null, notes: new Map() };

  const stored = (key) => {
    try {
      return window.localStorage.getItem(key);
    } catch {
      return null;
    }
  };
  const store = (key, value) => {
    try {
      window.localStorage.setItem(key, value);
    } catch {
      /* private mode: the choice lasts this page only */
    }
  };

  // ---- his state and pause/unpause ----------------------------------------------------

  function renderAgent() {
    const agent = tools.agent;
    const box = $("agent-state");
    let text = "State unknown";
    let state = "unknown";
    if (agent && agent.known) {
      state = agent.paused ? "paused" : "available";
      text = agent.paused ? `Paused${agent.reason ? `: ${agent.reason}` : ""}` : "Available";
      const partly = (agent.queues || []).filter((q) => q.paused);
      if (!agent.paused && partly.length) text = `Available (paused in ${partly.map((q) => q.queue).join(", ")})`;
    }
    box.textContent = text;
    box.dataset.state = state;
    $("agent-state").title = agent && agent.queues ? agent.queues.map((q) => `${q.queue}: ${q.paused ? "paused" : "available"}`).join("\n") : "";
    const paused = Boolean(agent && agent.known && agent.paused);
    $("pause-toggle").textContent = paused ? "Resume work" : "Pause";
    $("pause-reason").hidden = paused;
  }

  async function togglePause() {
    const paused = Boolean(tools.agent && tools.agent.known && tools.agent.paused);
    const reason = $("pause-reason").value || null;
    const status = $("agent-status");
    if (!paused && tools.info.pause_reasons.length && !reason) {
      status.textContent = "Choose a reason first";
      return;
    }
    $("pause-toggle").disabled = true;
    status.textContent = paused ? "Resuming…" : "Pausing…";
    try {
      await postJson("/api/console/pause", { paused: !paused, reason: paused ? null : reason });
      status.textContent = paused ? "Back at work" : "Paused";
      // The PBX's own event confirms it (agent_state); until then show what it accepted.
      tools.agent = { ...(tools.agent || {}), known: true, paused: !paused, reason: paused ? null : reason };
      renderAgent();
    } catch (err) {
      status.textContent = `Not done: ${err.message}`;
    } finally {
      $("pause-toggle").disabled = false;
    }
  }

  // ---- search and click-to-dial --------------------------------------------------------

  async function dial(number, statusNode) {
    const status = statusNode || $("search-status");
    status.textContent = `Calling your phone for ${number}…`;
    try {
      await postJson("/api/console/dial", { number });
      status.textContent = `Your phone rings: pick it up to call ${number}`;
    } catch (err) {
      status.textContent = `Not dialled: ${err.message}`;
    }
  }

  function dialButton(number, label, statusNode) {
    if (!tools.info || !tools.info.can_dial || !number) return null;
    const button = el("button", { type: "button", class: "btn btn-small dial", title: `Call ${label || number}` }, "Call");
    button.addEventListener("click", () => dial(number, statusNode));
    return button;
  }

  function renderResults(body) {
    const list = $("search-results");
    const contacts = body.contacts || [];
    const rows = contacts.map((c) =>
      el(
        "li",
        { class: "result" },
        el("span", { class: "result-name" }, c.name || ""),
        c.vip ? el("span", { class: "badge badge-vip" }, "VIP") : null,
        c.company ? el("span", { class: "result-company" }, c.company) : null,
        externalLink(c.url, "CRM ↗", "result-link"),
        el(
          "span",
          { class: "result-phones" },
          ...(c.phones || []).map((p) => el("span", { class: "result-phone" }, el("span", {}, p.display || p.number), dialButton(p.number, c.name))),
        ),
      ),
    );
    const note = body.unsupported && body.unsupported.length ? `search not supported by ${body.unsupported.join(", ")}` : null;
    setChildren(list, [
      rows.length ? el("ul", { class: "result-list" }, ...rows) : el("p", { class: "result-none" }, "Nobody found"),
      note ? el("p", { class: "result-note" }, note) : null,
      ...(body.failed || []).map((f) => el("p", { class: "result-note" }, `not searched: ${f}`)),
    ]);
    list.hidden = false;
  }

  async function search(event) {
    event.preventDefault();
    const q = $("search-q").value.trim();
    const status = $("search-status");
    if (q.length < 2) {
      status.textContent = "Type at least 2 characters";
      return;
    }
    status.textContent = "Searching…";
    try {
      const body = await getJson(`/api/console/search?q=${encodeURIComponent(q)}`);
      status.textContent = "";
      renderResults(body);
    } catch (err) {
      status.textContent = err.message;
      $("search-results").hidden = true;
    }
  }

  // ---- the ring: sound and desktop notification ------------------------------------------

  function soundOn() {
    return stored(SOUND_KEY) === "on";
  }

  function renderSound() {
    const button = $("sound-toggle");
    button.textContent = soundOn() ? "Ring sound: on" : "Ring sound: off";
    button.setAttribute("aria-pressed", soundOn() ? "true" : "false");
  }

  // A phone's double ring (440 + 480 Hz, as telephones do), made on the spot: no audio file.
  function ringOnce() {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    if (!tools.audio) tools.audio = new Ctx();
    const ctx = tools.audio;
    if (ctx.state === "suspended" && ctx.resume) ctx.resume();
    const gain = ctx.createGain();
    gain.gain.value = 0.12;
    gain.connect(ctx.destination);
    for (const [at, length] of [[0, 0.4], [0.6, 0.4]]) {
      for (const hz of [440, 480]) {
        const osc = ctx.createOscillator();
        osc.frequency.value = hz;
        osc.connect(gain);
        osc.start(ctx.currentTime + at);
        osc.stop(ctx.currentTime + at + length);
      }
    }
  }

  // Called by console.js whenever the number of ringing cards changes.
  function setRinging(count) {
    if (count > 0 && soundOn()) {
      if (!tools.ringTimer) {
        ringOnce();
        tools.ringTimer = window.setInterval(ringOnce, RING_EVERY_MS);
      }
    } else if (tools.ringTimer) {
      window.clearInterval(tools.ringTimer);
      tools.ringTimer = null;
    }
  }

  // Asked once, ever, on the operator's first click (browsers want a gesture for it).
  function askForNotifications() {
    if (!("Notification" in window) || stored(ASKED_KEY) || Notification.permission !== "default") return;
    store(ASKED_KEY, "yes");
    try {
      Notification.requestPermission();
    } catch {
      /* an old browser: no desktop notifications */
    }
  }

  // A new ringing card: a desktop notification (clicking it brings the console forward).
  function notifyRing(card) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    const caller = card.caller || {};
    const title = `Ringing: ${caller.name || caller.number_display || "Unknown number"}`;
    const body = [caller.company, caller.name ? caller.number_display : null, card.queue ? `queue ${card.queue}` : null].filter(Boolean).join(" · ");
    try {
      const note = new Notification(title, { body, tag: card.card_id, requireInteraction: false });
      note.onclick = () => {
        window.focus();
        note.close();
      };
      tools.notes.set(card.card_id, note);
    } catch {
      /* notifications refused by the system: the page still shows the card */
    }
  }

  // The card stopped ringing: its notification is old news.
  function ringEnded(cardId) {
    const note = tools.notes.get(cardId);
    if (note) {
      note.close();
      tools.notes.delete(cardId);
    }
  }

  // ---- start ---------------------------------------------------------------------------

  function onHello(hello) {
    tools.info = hello.console || { wrapup_codes: [], pause_reasons: [], can_pause: false, can_dial: false, wrapup_seconds: 0 };
    const select = $("pause-reason");
    const current = select.value;
    setChildren(select, [el("option", { value: "" }, "Reason…"), ...tools.info.pause_reasons.map((r) => el("option", { value: r }, r))]);
    if (tools.info.pause_reasons.includes(current)) select.value = current;
    $("agent").hidden = !tools.info.can_pause;
    tools.agent = hello.agent || null;
    renderAgent();
  }

  function onAgent(state) {
    tools.agent = state;
    renderAgent();
  }

  $("pause-toggle").addEventListener("click", togglePause);
  $("search").addEventListener("submit", search);
  $("sound-toggle").addEventListener("click", () => {
    store(SOUND_KEY, soundOn() ? "off" : "on");
    renderSound();
    setRinging(0);
    if (soundOn()) {
      ringOnce(); // what it sounds like, and the click unlocks the audio
      setRinging(document.querySelectorAll('article.card[data-state="ringing"]').length);
    }
  });
  document.addEventListener("pointerdown", askForNotifications, { capture: true, once: true });
  renderSound();

  window.ConsoleTools = Object.freeze({ onHello, onAgent, setRinging, notifyRing, ringEnded, dialButton, info: () => tools.info });
})();
