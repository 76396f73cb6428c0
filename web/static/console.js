// Callbridge operator console: shows one card per call for this operator.
//
// Contract: screenpop/messages.py. The server pushes `hello` (every card the operator
// should see now), `card` (the whole card, replaced by card_id; version only grows) and
// `card_removed` over /ws/console. Everything the operator does goes through JSON POSTs
// carrying the session's CSRF token (from GET /api/session). The DOM, session, POST and
// socket helpers are window.Callbridge (common.js, loaded first).
//
// Safety rule for this file: every string from a caller, a CRM or the server is data.
// It reaches the page only through textContent / text nodes / checked attributes, never
// through innerHTML, so a caller named "<img src=x onerror=alert(1)>" shows just that.
"use strict";

(() => {
  // ---- tunables -------------------------------------------------------------------

  const WITHDRAWN_VISIBLE_MS = 3000; // long enough to read "answered by Anna"
  const FADE_MS = 600; // matches the .card.fading transition in console.css
  const HISTORY_ROWS = 8;

  const TOOLS = window.ConsoleTools; // console-tools.js: pause, search, dial, ring sound, alerts
  // console-forms.js: a card's note box, "create contact" form and recording pause
  const { createNoteBox, saveNote, updateNoteBox, createContactForm, updateContactForm, createPauseControl } = window.ConsoleForms;

  const STATE_LABELS = {
    ringing: "Ringing",
    live: "On call",
    after_call: "After-call work",
    withdrawn: "Taken",
  };

  const LOOKUP_BADGES = {
    pending: ["Looking up…", "badge-muted"],
    not_found: ["New caller", "badge-info"],
    unavailable: ["CRM unavailable", "badge-warn"],
    colleague: ["Colleague", "badge-info"],
    anonymous: ["Anonymous", "badge-muted"],
    invalid: ["Unusual number", "badge-muted"],
  };

  // ---- page state -----------------------------------------------------------------

  const app = {
    views: new Map(), // card_id -> view (see createView)
    clockOffset: 0, // server epoch seconds minus ours, from hello.server_time
    pbxOffset: 0, // the PBX's clock minus the server's (card times are the PBX's)
    socket: null, // Callbridge.liveSocket on /ws/console
  };

  const { $, el, setChildren, externalLink, formatDuration, formatWhen, postJson } = window.Callbridge;

  // ---- time -----------------------------------------------------------------------

  // Now in the PBX's clock, which the card times are in: the browser's clock is not trusted
  // (the server's time came with hello), nor is the PBX's taken to be the server's.
  const pbxNow = () => Date.now() / 1000 + app.clockOffset + app.pbxOffset;

  // What the big timer of a card counts, by state: null when it shows none.
  function timerSpec(card) {
    if (card.state === "ringing") return { label: "Waiting", from: card.entered_at };
    if (card.state === "live") return { label: "Talking", from: card.answered_at || card.entered_at };
    if (card.state === "after_call" && card.answered_at) {
      return { label: "Talked", fixed: (card.ended_at || pbxNow()) - card.answered_at };
    }
    return null;
  }

  // One interval for every running timer, so they tick together.
  function tickTimers() {
    for (const node of document.querySelectorAll(".timer-value[data-from]")) {
      node.textContent = formatDuration(pbxNow() - Number(node.dataset.from));
    }
    for (const node of document.querySelectorAll(".wrapup-left[data-until]")) {
      node.textContent = `closes by itself in ${formatDuration(Number(node.dataset.until) - pbxNow())}`;
    }
  }

  // ---- frames from /ws/console -------------------------------------------------------

  function onMessage(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return; // not ours; the contract only sends JSON
    }
    if (msg.type === "hello") onHello(msg);
    else if (msg.type === "card") upsertCard(msg, false);
    else if (msg.type === "card_removed") removeCard(msg.card_id, false);
    else if (msg.type === "agent_state") TOOLS.onAgent(msg);
    else if (msg.type === "clock") setClock(msg);
  }

  function setClock(frame) {
    app.clockOffset = Number(frame.server_time) - Date.now() / 1000 || 0;
    app.pbxOffset = Number(frame.pbx_offset) || 0;
    tickTimers();
  }

  function onHello(hello) {
    app.socket.connected();
    setClock(hello);
    window.Callbridge.showWhoami(hello);
    TOOLS.onHello(hello);
    // hello is the server's whole truth: drop cards it no longer has, restore the rest.
    const keep = new Set((hello.cards || []).map((c) => c.card_id));
    for (const id of [...app.views.keys()]) if (!keep.has(id)) removeCard(id, false);
    for (const card of hello.cards || []) upsertCard(card, true);
  }

  // ---- cards ------------------------------------------------------------------------

  function upsertCard(card, fromHello) {
    const view = app.views.get(card.card_id);
    if (view) {
      // version only grows: a late frame must never undo a newer one (hello may repeat it).
      if (card.version < view.card.version || (card.version === view.card.version && !fromHello)) return;
      const was = view.card.state;
      view.card = card;
      if (was === "ringing" && card.state !== "ringing") {
        TOOLS.ringEnded(card.card_id);
        if (card.state !== "withdrawn") insertInOrder(view.root, card); // out of the ringing strip
      }
      renderView(view);
      return;
    }
    const created = createView(card);
    app.views.set(card.card_id, created);
    if (card.state === "ringing") {
      $("ringing").prepend(created.root); // the newest ringing card on top, always in view
      TOOLS.notifyRing(card);
    } else insertInOrder(created.root, card);
    renderView(created);
    refreshBoard();
  }

  // Oldest call first; existing cards never move (moving a node would blur a note
  // the operator is typing). Ringing cards live in the ringing strip above them.
  function insertInOrder(root, card) {
    const list = $("cards");
    for (const other of list.children) {
      const view = app.views.get(other.dataset.cardId);
      if (view && view.card.entered_at > card.entered_at) {
        list.insertBefore(root, other);
        return;
      }
    }
    list.append(root);
  }

  function removeCard(cardId, fade) {
    const view = app.views.get(cardId);
    if (!view) return;
    app.views.delete(cardId);
    window.clearTimeout(view.removeTimer);
    window.clearTimeout(view.note.timer);
    TOOLS.ringEnded(cardId);
    if (fade) {
      view.root.classList.add("fading");
      window.setTimeout(() => {
        view.root.remove();
        refreshBoard();
      }, FADE_MS);
    } else {
      view.root.remove();
    }
    refreshBoard();
  }

  // Empty-state text and the tab title ("(2) ringing") for a glance from another window.
  function refreshBoard() {
    $("empty").hidden = app.views.size > 0;
    let ringing = 0;
    for (const view of app.views.values()) if (view.card.state === "ringing") ringing += 1;
    document.title = ringing ? `(${ringing}) ringing — Callbridge` : "Callbridge console";
    $("ringing").hidden = !$("ringing").children.length;
    TOOLS.setRinging(ringing);
  }

  // A view keeps its interactive parts (note box, contact form) across updates, so a
  // card frame arriving mid-typing never eats the operator's text; the read-only parts
  // are rebuilt from the card on every update.
  function createView(card) {
    const view = { card, removeTimer: null };
    view.head = el("div", { class: "card-head" });
    view.banner = el("div", { class: "transfer-banner", hidden: true });
    view.identity = el("div", { class: "identity" });
    view.reason = el("p", { class: "state-reason", hidden: true });
    view.history = el("section", { class: "history" });
    view.note = createNoteBox(view);
    view.contact = createContactForm(view);
    view.actions = createActions(view);
    view.pause = createPauseControl(view);
    view.root = el(
      "article",
      { class: "card", "data-card-id": card.card_id },
      view.head,
      view.reason, // "answered by Anna" is the news on a withdrawn card: first
      view.banner,
      view.identity,
      view.pause.root,
      view.contact.root,
      view.note.root,
      view.history,
    );
    // "Done" sits at the end of the note's bar: write the note, then close the card.
    view.note.bar.append(view.actions.root);
    return view;
  }

  function renderView(view) {
    const card = view.card;
    view.root.dataset.state = card.state;
    view.root.classList.toggle("vip", Boolean(card.caller && card.caller.vip));
    setChildren(view.head, renderHead(card));
    renderBanner(view.banner, card.transfer);
    setChildren(view.identity, renderIdentity(card.caller || {}));
    view.reason.hidden = card.state !== "withdrawn";
    view.reason.textContent = card.state === "withdrawn" ? withdrawnText(card) : "";
    setChildren(view.history, renderHistory(card));
    updateNoteBox(view);
    updateContactForm(view);
    updateActions(view);
    view.pause.root.hidden = !(card.state === "live" && card.recording);
    scheduleWithdrawal(view);
    tickTimers();
    refreshBoard();
  }

  function renderHead(card) {
    const where = [];
    // Which site's call: only where the bridge serves several PBXes (one PBX: nothing new).
    if (((TOOLS.info() || {}).pbxes || []).length > 1) where.push(el("span", { class: "pbx-tag" }, card.pbx));
    if (card.queue) where.push(el("span", { class: "queue" }, `Queue ${card.queue}`));
    if (card.dialed) where.push(el("span", { class: "dialed" }, `Dialled ${card.dialed}`));
    if (card.state !== "ringing" && card.wait_seconds > 0) {
      where.push(el("span", { class: "waited" }, `waited ${formatDuration(card.wait_seconds)}`));
    }
    if (card.recording) where.push(el("span", { class: "recording" }, "● REC"));
    return [
      el("span", { class: "state-label" }, STATE_LABELS[card.state] || card.state),
      el("span", { class: "where" }, ...where),
      renderTimer(card),
    ];
  }

  function renderTimer(card) {
    const spec = timerSpec(card);
    if (!spec) return el("span", { class: "timer", hidden: true });
    const value = el("span", { class: "timer-value" });
    if (spec.fixed !== undefined) value.textContent = formatDuration(spec.fixed);
    else value.dataset.from = String(spec.from);
    return el("span", { class: "timer" }, el("span", { class: "timer-label" }, spec.label), value);
  }

  function renderBanner(banner, transfer) {
    banner.hidden = !transfer;
    if (!transfer) {
      banner.replaceChildren();
      return;
    }
    const who = transfer.from_name
      ? `${transfer.from_name} (${transfer.from_operator || "?"})`
      : transfer.from_operator || "a colleague";
    const text = `Transferred by ${who}${transfer.note ? ": " : ""}`;
    setChildren(banner, [
      el("span", { class: "transfer-who" }, text),
      transfer.note ? el("span", { class: "transfer-note" }, transfer.note) : null,
    ]);
  }

  function renderIdentity(caller) {
    const anonymous = caller.lookup === "anonymous";
    const name = caller.name || (anonymous ? "Anonymous caller" : caller.number_display || "Unknown number");
    const badges = [];
    if (caller.vip) badges.push(el("span", { class: "badge badge-vip vip-badge" }, "VIP"));
    // The "VIP" tag is the VIP badge: never both.
    for (const tag of caller.tags || []) {
      if (caller.vip && String(tag).trim().toUpperCase() === "VIP") continue;
      badges.push(el("span", { class: "badge badge-tag tag" }, tag));
    }
    const lookup = LOOKUP_BADGES[caller.lookup];
    if (lookup) badges.push(el("span", { class: `badge lookup ${lookup[1]}` }, lookup[0]));
    if (caller.stale) badges.push(el("span", { class: "badge badge-warn stale" }, "CRM down: last known"));

    const sub = [];
    if (caller.company) sub.push(el("span", { class: "company" }, caller.company));
    // The number goes under the name, unless the name already is the number.
    if (caller.name && caller.number_display) sub.push(el("span", { class: "number" }, caller.number_display));
    const crm = externalLink(caller.crm_url, "Open in CRM ↗", "crm-link");
    if (crm) sub.push(crm);

    return [
      el("h2", { class: "caller-name" }, name),
      badges.length ? el("div", { class: "badges" }, ...badges) : null,
      sub.length ? el("div", { class: "caller-sub" }, ...sub) : null,
    ];
  }

  function withdrawnText(card) {
    const reason = card.state_reason || "taken by a colleague";
    return reason.charAt(0).toUpperCase() + reason.slice(1);
  }

  // A withdrawn card says who answered, then fades away by itself.
  function scheduleWithdrawal(view) {
    window.clearTimeout(view.removeTimer);
    view.removeTimer = null;
    if (view.card.state !== "withdrawn") return;
    const id = view.card.card_id;
    view.removeTimer = window.setTimeout(() => removeCard(id, true), WITHDRAWN_VISIBLE_MS);
  }

  // ---- history ----------------------------------------------------------------------

  function renderHistory(card) {
    const title = el("h3", {}, "Recent interactions");
    const items = (card.history || []).slice(0, HISTORY_ROWS);
    if (!items.length) {
      const pending = card.caller && card.caller.lookup === "pending";
      return [title, el("p", { class: "history-empty" }, pending ? "Looking up…" : "No earlier interactions")];
    }
    const head = el(
      "tr",
      {},
      el("th", { scope: "col" }, "When"),
      el("th", { scope: "col" }, "Operator"),
      el("th", { scope: "col" }, "What"),
      el("th", { scope: "col" }, "Note"),
      el("th", { scope: "col", class: "h-act" }, el("span", { class: "visually-hidden" }, "Call back")),
    );
    // Newest first: the server sends them so; kept so whatever comes.
    const sorted = [...items].sort((a, b) => String(b.at).localeCompare(String(a.at)));
    const rows = sorted.map((item) => renderHistoryRow(item, card));
    return [title, el("table", { class: "history-table" }, el("thead", {}, head), el("tbody", {}, ...rows))];
  }

  const KIND_LABELS = { call: "Call", note: "Note", ticket: "Ticket", deal: "Deal", email: "E-mail", task: "Task" };

  // What: the kind, what happened, transfers. Note: notes only (a note, the note of a call).
  function renderHistoryRow(item, card) {
    const kind = KIND_LABELS[item.kind] || item.kind || "";
    const other = item.kind !== "note" && item.kind !== "call";
    const detail = item.detail || (other ? [item.summary, item.outcome].filter(Boolean).join(" · ") : item.kind === "call" ? item.outcome : null) || null;
    const note = item.note || (item.kind === "note" ? item.summary || "" : "");
    const what = el(
      "td",
      { class: "h-what" },
      el("span", { class: "h-kind" }, kind),
      detail ? el("span", { class: "h-detail" }, externalLink(item.url, detail, "history-link") || detail) : null,
      ...(item.transfers || []).map((t) => el("span", { class: "h-transfer" }, t)),
    );
    const number = card.caller && card.caller.lookup !== "anonymous" ? card.caller.number : null;
    return el(
      "tr",
      { class: `history-row kind-${item.kind}` },
      el("td", { class: "h-when" }, formatWhen(item.at)),
      el("td", { class: "h-operator" }, item.operator || "—"),
      what,
      el("td", { class: "h-note" }, note),
      el("td", { class: "h-act" }, item.kind === "call" ? TOOLS.dialButton(number, card.caller.name) : null),
    );
  }

  // ---- "done" (after-call work finished) ----------------------------------------------

  function createActions(view) {
    const actions = {};
    const codes = (TOOLS.info() || {}).wrapup_codes || [];
    actions.code = el("select", { class: "wrapup-code", "aria-label": "Wrap-up code" },
      el("option", { value: "" }, "Wrap-up code…"), ...codes.map((c) => el("option", { value: c }, c)));
    actions.code.hidden = !codes.length;
    actions.left = el("span", { class: "wrapup-left" });
    actions.done = el("button", { type: "button", class: "btn btn-primary done" }, "Done");
    actions.status = el("span", { class: "done-status", role: "status" });
    actions.root = el("div", { class: "actions", hidden: true }, actions.code, actions.done, actions.left, actions.status);
    actions.done.addEventListener("click", () => finishCall(view));
    return actions;
  }

  // The after-call countdown: the card closes itself at closes_at (the server closes it).
  function updateActions(view) {
    const { actions, card } = view;
    actions.root.hidden = card.state !== "after_call";
    if (card.state === "after_call" && card.closes_at) actions.left.dataset.until = String(card.closes_at);
    else delete actions.left.dataset.until;
  }

  // Save the note first: "done" must never lose what the operator wrote.
  async function finishCall(view) {
    const { actions } = view;
    actions.done.disabled = true;
    actions.status.textContent = "";
    try {
      if (!(await saveNote(view))) throw new Error("note not saved");
      await postJson("/api/cards/dismiss", { call_id: view.card.call_id, wrapup_code: actions.code.value || null });
      removeCard(view.card.card_id, true);
    } catch (err) {
      actions.status.textContent = `Could not close the card: ${err.message}`;
      actions.done.disabled = false;
    }
  }

  // ---- start ------------------------------------------------------------------------

  function start() {
    window.setInterval(tickTimers, 1000);
    $("signout").addEventListener("click", window.Callbridge.signOut);
    app.socket = window.Callbridge.liveSocket("/ws/console", { onMessage, connectedText: "connected" });
    app.socket.start();
  }

  start();
})();
