// Callbridge supervisor view: the wallboard's picture in detail, with the actions.
//
// Builds on window.Wallboard (wallboard.js: frames, timers) and window.Callbridge (common.js:
// DOM helpers, session, POST with CSRF).
// Every action is a POST under /api/supervisor/ naming the `pbx` of its target (queues,
// extensions and channels are per PBX); the PBX's answer (Response + Message) is shown in the
// "PBX answer" panel as it came. Text from the server is text only.
"use strict";

(() => {
  const W = window.Wallboard;
  const { $, el, setChildren, update, formatDuration, post, showWhoami } = window.Callbridge;
  const MODES = [
    ["listen", "Listen", "Hear the call; nobody hears you"],
    ["whisper", "Whisper", "Coach the operator; the caller does not hear you"],
    ["barge", "Barge", "Join the call; both hear you"],
  ];
  const ACTIVITY_ROWS = 15;

  const rows = { operators: new Map(), calls: new Map(), spies: new Map() };
  let ownExtension = null;
  let mine = {}; // "pbx|operator" -> mode of the session (live or ringing) on this page's phone

  const opKey = (pbx, operator) => `${pbx || ""}|${operator}`;

  // ---- the PBX's answer -------------------------------------------------------------------

  function showAnswer(state, title, text) {
    const box = $("answer");
    box.dataset.state = state;
    $("answer-title").textContent = title;
    $("answer-text").textContent = text;
  }

  // Run one action: the button waits, then the PBX's (or the server's) answer shows.
  async function act(button, what, path, payload) {
    if (button) button.disabled = true;
    showAnswer("pending", what, "Sending to the PBX…");
    try {
      const { status, body } = await post(path, payload);
      if (body && body.response) {
        const said = body.message ? `${body.response} — ${body.message}` : body.response;
        showAnswer(body.ok ? "ok" : "error", what, `PBX: ${said}`);
      } else {
        showAnswer("error", what, (body && body.message) || `Refused (HTTP ${status})`);
      }
    } catch (err) {
      showAnswer("error", what, `Not sent: ${err.message || err}`);
    } finally {
      if (button) button.disabled = false;
    }
  }

  function listener() {
    const value = $("listener").value.trim();
    return value === "" ? null : value;
  }

  function label(name, ext) {
    return name ? `${name} (${ext})` : ext || "?";
  }

  // The listening phone of this page: the one typed in, else the user's own.
  function myPhone() {
    return listener() || ownExtension;
  }

  // One session per listening phone: a click on another mode switches it (the server sends
  // ChanSpy's DTMF, or ends and calls again); the mode it is in shows pressed.
  function spyButtons(pbx, operator, operatorName, enabled, listenerExt, activeMode) {
    return MODES.map(([mode, text, hint]) => {
      const on = activeMode === mode;
      const button = el("button", { type: "button", class: `act spy-${mode}${on ? " on" : ""}`, title: hint,
        disabled: !enabled, "aria-pressed": on ? "true" : "false" }, text);
      button.addEventListener("click", () => {
        const from = listenerExt === undefined ? listener() : listenerExt;
        act(button, `${text} — ${W.withPbx({ pbx }, label(operatorName, operator))}${from ? ` from ${from}` : ""}`,
          "/api/supervisor/spy", { operator, mode, listener_extension: from, pbx });
      });
      return button;
    });
  }

  // ---- keyed rows: a row keeps its inputs across frames -----------------------------------

  function syncRows(map, body, items, key, create, fill) {
    const seen = new Set();
    items.forEach((item, index) => {
      const id = key(item);
      seen.add(id);
      let row = map.get(id);
      if (!row) {
        row = create(item);
        map.set(id, row);
      }
      fill(row, item);
      if (body.children[index] !== row.tr) body.insertBefore(row.tr, body.children[index] || null);
    });
    for (const [id, row] of map) {
      if (!seen.has(id)) {
        row.tr.remove();
        map.delete(id);
      }
    }
  }

  function cells(n) {
    return Array.from({ length: n }, () => el("td"));
  }

  // ---- operators ----------------------------------------------------------------------------

  function createOperatorRow(op) {
    const tds = cells(9);
    const reason = el("input", { type: "text", class: "reason-input", maxlength: 64, placeholder: "reason",
      "aria-label": `Pause reason for ${op.operator}` });
    const pause = el("button", { type: "button", class: "act pause" }, "Pause");
    const pauseCell = el("div", { class: "pause-cell" }, reason, pause);
    setChildren(tds[8], [pauseCell]);
    tds[2].className = "with";
    const row = { tr: el("tr", { "data-operator": op.operator, "data-pbx": op.pbx || "" }, ...tds), tds, reason,
      pause, op };
    pause.addEventListener("click", () => {
      const current = row.op;
      const paused = current.status !== "paused";
      const what = `${paused ? "Pause" : "Unpause"} ${W.withPbx(current, label(current.name, current.operator))}`;
      act(pause, what, "/api/supervisor/pause",
        { extension: current.operator, paused, reason: paused ? reason.value.trim() : "", pbx: current.pbx });
    });
    return row;
  }

  function fillOperatorRow(row, op) {
    row.op = op;
    row.tr.dataset.status = op.status;
    const [name, status, withCell, forCell, calls, avg, queues, spy] = row.tds;
    update(name, [op.name, op.operator, W.withPbx(op, "")], () => [el("span", { class: "op-name" }, op.name || op.operator),
      el("span", { class: "ext" }, W.withPbx(op, op.operator))]);
    update(status, [op.status, op.paused_reason], () => [
      el("span", { class: "chip", "data-status": op.status }, W.statusLabel(op.status)),
      op.paused_reason ? el("span", { class: "reason" }, op.paused_reason) : null]);
    update(withCell, [op.with_caller], () => [op.with_caller || ""]);
    update(forCell, [op.status, op.since], () => [op.since ? W.since(op.since, "", op.pbx) : ""]);
    update(calls, [op.calls_today], () => [String(op.calls_today)]);
    update(avg, [op.average_talk_seconds], () => [
      op.average_talk_seconds === null ? "—" : formatDuration(op.average_talk_seconds)]);
    update(queues, [op.queues, op.name], () => op.queues.map((queue) => {
      const remove = el("button", { type: "button", class: "chip-x", title: `Remove from ${queue}`,
        "aria-label": `Remove ${op.operator} from ${queue}` }, "×");
      remove.addEventListener("click", () => act(remove,
        `Remove ${label(op.name, op.operator)} from ${W.withPbx(op, queue)}`,
        "/api/supervisor/queue/remove", { queue, extension: op.operator, pbx: op.pbx }));
      return el("span", { class: "queue-chip" }, queue, remove);
    }));
    const key = opKey(op.pbx, op.operator);
    update(spy, [op.status, op.name, mine[key]], () => [el("div", { class: "spy-cell" },
      ...spyButtons(op.pbx, op.operator, op.name, op.status === "talking", undefined, mine[key]))]);
    row.pause.textContent = op.status === "paused" ? "Unpause" : "Pause";
    row.reason.hidden = op.status === "paused" || op.queues.length === 0;
    row.pause.hidden = op.queues.length === 0;
  }

  // ---- live calls and spy sessions -----------------------------------------------------------

  function fillCallRow(row, call, names) {
    const [caller, queue, operator, duration, recording, spy] = row.tds;
    const key = opKey(call.pbx, call.operator);
    update(caller, [call.caller_name, call.caller_number], () => [
      el("span", { class: "caller-name" }, call.caller_name || call.caller_number || "Unknown caller"),
      call.caller_name && call.caller_number ? el("span", { class: "number" }, call.caller_number) : null]);
    update(queue, [call.queue, W.withPbx(call, "")], () => [W.withPbx(call, call.queue || "direct")]);
    update(operator, [call.operator, names[key]], () => [
      call.operator ? label(names[key], call.operator) : el("span", { class: "muted" }, "waiting")]);
    update(duration, [call.call_id], () => [W.running(call.duration_seconds, true)]);
    update(recording, [call.recording], () => [call.recording ? el("span", { class: "rec" }, "● REC") : "—"]);
    update(spy, [call.operator, mine[key]], () => (call.operator
      ? [el("div", { class: "spy-cell" }, ...spyButtons(call.pbx, call.operator, names[key], true, undefined,
        mine[key]))] : []));
  }

  function fillSpyRow(row, s) {
    const [who, mode, operator, caller, sinceCell, by, actions] = row.tds;
    update(who, [s.listener, s.listener_name], () => [label(s.listener_name, s.listener)]);
    update(mode, [s.mode, s.state], () => [el("span", { class: "chip", "data-mode": s.mode || "" }, s.mode || "spying"),
      s.state === "calling" ? el("span", { class: "muted" }, " calling the phone…") : null]);
    update(operator, [s.operator, s.operator_name], () => [W.withPbx(s, label(s.operator_name, s.operator))]);
    update(caller, [s.caller], () => [s.caller || ""]);
    update(sinceCell, [s.since], () => [W.since(s.since, "", s.pbx)]);
    update(by, [s.requested_by], () => [s.requested_by || "—"]);
    update(actions, [s.state, s.mode, s.spyer_channel], () => {
      if (s.state !== "live") {
        const cancel = el("button", { type: "button", class: "act end" }, "Cancel");
        cancel.addEventListener("click", () => act(cancel, `Cancel the call to ${label(s.listener_name, s.listener)}`,
          "/api/supervisor/spy/cancel", { listener_extension: s.listener, pbx: s.pbx }));
        return [el("div", { class: "spy-cell" }, cancel)];
      }
      const other = spyButtons(s.pbx, s.operator, s.operator_name, true, s.listener)
        .filter((b) => !b.classList.contains(`spy-${s.mode}`));
      const end = el("button", { type: "button", class: "act end" }, "End");
      end.addEventListener("click", () => act(end, `End ${label(s.listener_name, s.listener)}'s session`,
        "/api/supervisor/spy/end", { spyer_channel: s.spyer_channel, pbx: s.pbx }));
      return [el("div", { class: "spy-cell" }, ...other, end)];
    });
  }

  // ---- the rest ----------------------------------------------------------------------------------

  // A queue is (pbx, name): the option's value carries both, its text the PBX only when several.
  function fillQueueSelect(queues) {
    const select = $("reserve-queue");
    const chosen = select.value;
    const values = queues.map((q) => JSON.stringify([q.pbx || null, q.name]));
    const texts = queues.map((q) => W.withPbx(q, q.name));
    update(select, [...values, ...texts], () => queues.map((q, i) => el("option", { value: values[i] }, texts[i])));
    if (values.includes(chosen)) select.value = chosen;
  }

  function renderActivity(items) {
    const recent = items.slice(-ACTIVITY_ROWS).reverse();
    setChildren($("activity"), recent.map((a) =>
      el("li", { "data-kind": a.kind }, el("time", {}, W.fmtTime(a.at)), el("span", {}, a.text))));
  }

  function onFrame(frame) {
    const phone = myPhone();
    mine = Object.fromEntries((frame.spies || []).filter((s) => s.listener === phone && s.operator)
      .map((s) => [opKey(s.pbx, s.operator), s.mode]));
    const ops = frame.operators || [];
    const names = Object.fromEntries(ops.map((o) => [opKey(o.pbx, o.operator), o.name]));
    syncRows(rows.operators, $("operators-body"), ops, (o) => opKey(o.pbx, o.operator), createOperatorRow,
      fillOperatorRow);
    $("operators-empty").hidden = ops.length > 0;
    const calls = frame.live_calls || [];
    syncRows(rows.calls, $("calls-body"), calls, (c) => c.call_id,
      (c) => {
        const tds = cells(6);
        tds[0].className = "caller";
        return { tr: el("tr", { "data-call": c.call_id }, ...tds), tds };
      },
      (row, c) => fillCallRow(row, c, names));
    $("calls-empty").hidden = calls.length > 0;
    const spies = frame.spies || [];
    syncRows(rows.spies, $("spies-body"), spies,
      (s) => `${s.pbx || ""}|${s.spyer_channel || `calling:${s.listener}:${s.since}`}`,
      (s) => {
        const tds = cells(7);
        tds[3].className = "caller";
        return { tr: el("tr", { "data-state": s.state }, ...tds), tds };
      },
      fillSpyRow);
    $("spies-empty").hidden = spies.length > 0;
    fillQueueSelect(frame.queues || []);
    renderActivity(frame.activity || []);
  }

  function onSession(session) {
    const exts = session.extensions || [];
    ownExtension = exts[0] || null;
    showWhoami(session);
    $("listener").placeholder = exts.length ? `your own phone (${exts[0]})` : "extension (you have none)";
  }

  $("reserve").addEventListener("submit", (event) => {
    event.preventDefault();
    let pbx = null;
    let queue = "";
    try {
      [pbx, queue] = JSON.parse($("reserve-queue").value);
    } catch {
      return; // no queue to choose yet
    }
    const extension = $("reserve-ext").value.trim();
    const name = $("reserve-name").value.trim();
    const penalty = Number($("reserve-penalty").value || 0);
    const button = event.submitter || $("reserve").querySelector("button");
    act(button, `Add ${label(name, extension)} to ${W.withPbx({ pbx }, queue)}`, "/api/supervisor/queue/add",
      { queue, extension, name, penalty, pbx });
  });

  window.Callbridge.onSession(onSession);
  W.onFrame(onFrame);
})();
