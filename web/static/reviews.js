// Callbridge review room: trainers and supervisors listen to recorded calls, comment on
// moments of them and score them on the QA card.
//
// Contract: recordings/http.py. GET /api/recordings (the list; filters operator, since,
// until, pbx, limit, offset; it says which PBXes there are: with several, each call shows its
// PBX and the PBX filter shows), GET /api/recordings/{id} (recording, call, timeline, comments,
// scores), the audio at recording.audio_url (served with Range, so the player can seek),
// POST /api/recordings/{id}/comments {at_seconds, text}, POST /api/recordings/{id}/score
// {scores: {criterion: points}, comment}, GET /api/reviews/criteria. POSTs carry the
// session's CSRF token (GET /api/session). The DOM, time, session and POST helpers are
// window.Callbridge (common.js, loaded first).
//
// Safety rule for this file: caller names, comments, queue and criterion names are data
// from people we do not trust. They reach the page only through textContent / text nodes /
// setAttribute, never through innerHTML.
"use strict";

(() => {
  // ---- tunables -------------------------------------------------------------------

  const PAGE_SIZE = 100; // recordings per list request (the API allows up to 1000)
  const OUTCOME_FETCHES = 4; // parallel detail requests when filtering by outcome
  const KEY_STEP_SECONDS = 5; // arrow keys on the progress bar
  const PIN_ROWS = 3; // rows of event labels above the bar before they may overlap
  const LABEL_GAP_PX = 6; // the least room between two labels on one row

  const EVENT_NAMES = {
    entered: "Entered",
    rung: "Rang",
    answered: "Answered",
    transferred: "Transferred",
    hung_up: "Hung up",
    recording_started: "Recording started",
    recording_stopped: "Recording stopped",
    paused: "Recording paused",
    resumed: "Recording resumed",
  };
  // Shown as pins on the bar; the others are its edges or its paused spans.
  const PINNED = new Set(["entered", "rung", "answered", "transferred", "hung_up"]);
  // The call's outcome in the reviewer's words (the API's values are the call log's).
  const OUTCOME_WORDS = {
    answered: "answered",
    abandoned: "caller hung up",
    unanswered: "not answered",
    incomplete: "end not seen",
  };
  const outcomeWords = (outcome) => OUTCOME_WORDS[outcome] || outcome;

  // ---- page state -----------------------------------------------------------------

  const app = {
    me: null, // GET /api/session
    criteria: [], // [{name, max_points}]
    items: [], // the loaded list, newest first (server order)
    offset: 0,
    hasMore: false,
    queues: new Set(), // every queue seen in the list, for the queue filter
    pbxes: [], // the configured PBXes (from the list): with several, calls name theirs
    outcomes: new Map(), // recording id -> the call's outcome (the list does not carry it)
    filters: {},
    current: null, // the open recording's detail (GET /api/recordings/{id})
    duration: 0, // seconds of the open recording: the file's, once the audio says so
    openToken: 0, // the latest selection; a slower earlier answer is dropped
    stamp: { at: 0, frozen: false }, // the comment box's time stamp
  };

  const { $, el, setChildren, formatClock, formatWhen, getJson, postJson } = window.Callbridge;

  // ---- time -----------------------------------------------------------------------

  // The start of a local calendar day ("2026-11-24", +days) as an ISO instant for the API.
  function dayStartIso(dateText, addDays) {
    const [y, m, d] = dateText.split("-").map(Number);
    return new Date(y, m - 1, d + addDays).toISOString();
  }

  const percentOf = (seconds) => (app.duration > 0 ? Math.min(100, Math.max(0, (100 * seconds) / app.duration)) : 0);
  const inRecording = (seconds) => seconds >= 0 && seconds <= app.duration + 0.05;

  // ---- top bar ----------------------------------------------------------------------

  function showWhoami(me) {
    window.Callbridge.showWhoami(me, el("span", { class: "who-role" }, me.role || ""));
  }

  // ---- the list and its filters -----------------------------------------------------

  function readFilters() {
    return {
      operator: $("f-operator").value.trim(),
      pbx: $("f-pbx").value,
      queue: $("f-queue").value,
      since: $("f-since").value,
      until: $("f-until").value,
      outcome: $("f-outcome").value,
    };
  }

  // Operator and dates go to the server; queue and outcome are filtered here, because
  // the list API has no such parameters (see the list's items: queue yes, outcome no).
  function listQuery(filters, offset) {
    const q = new URLSearchParams({ limit: String(PAGE_SIZE), offset: String(offset) });
    if (filters.operator) q.set("operator", filters.operator);
    if (filters.pbx) q.set("pbx", filters.pbx);
    if (filters.since) q.set("since", dayStartIso(filters.since, 0));
    if (filters.until) q.set("until", dayStartIso(filters.until, 1)); // "to" includes that day
    return `/api/recordings?${q}`;
  }

  async function loadList(reset) {
    if (reset) {
      app.filters = readFilters();
      app.items = [];
      app.offset = 0;
    }
    if (app.filters.operator && !/^[0-9]{1,20}$/.test(app.filters.operator)) {
      setListStatus("An operator is an extension: digits only.", true);
      return;
    }
    setListStatus("Loading…");
    try {
      const body = await getJson(listQuery(app.filters, app.offset));
      const found = body.recordings || [];
      app.items.push(...found);
      app.offset += found.length;
      app.hasMore = found.length === PAGE_SIZE;
      for (const rec of found) if (rec.queue) app.queues.add(rec.queue);
      fillPbxOptions(body.pbxes || []);
      fillQueueOptions();
      if (app.filters.outcome) await fetchOutcomes(app.items);
      renderList();
    } catch (err) {
      setListStatus(`Could not load the calls: ${err.message}`, true);
    }
  }

  function setListStatus(text, failed) {
    $("list-status").textContent = text;
    $("list-status").dataset.failed = failed ? "1" : "";
  }

  // The queue filter offers every queue seen so far, keeping the one picked.
  function fillQueueOptions() {
    const select = $("f-queue");
    const picked = select.value;
    const options = [...app.queues].sort().map((q) => el("option", { value: q }, q));
    setChildren(select, [el("option", { value: "" }, "All queues"), ...options]);
    select.value = app.queues.has(picked) ? picked : "";
  }

  // The PBX filter shows only when there are several PBXes.
  function fillPbxOptions(pbxes) {
    app.pbxes = pbxes;
    const select = $("f-pbx");
    const picked = select.value;
    $("f-pbx-label").hidden = pbxes.length < 2;
    setChildren(select, [el("option", { value: "" }, "All PBXes"), ...pbxes.map((p) => el("option", { value: p }, p))]);
    select.value = pbxes.includes(picked) ? picked : "";
  }

  const severalPbxes = () => app.pbxes.length > 1;

  // The outcome is the call's, found only in a recording's detail: fetch the details of
  // the loaded recordings we do not know yet, a few at a time, once each.
  async function fetchOutcomes(items) {
    const todo = items.filter((rec) => !app.outcomes.has(rec.id));
    let next = 0;
    async function worker() {
      while (next < todo.length) {
        const rec = todo[next++];
        try {
          const detail = await getJson(`/api/recordings/${encodeURIComponent(rec.id)}`);
          app.outcomes.set(rec.id, (detail.call && detail.call.outcome) || null);
        } catch {
          app.outcomes.set(rec.id, null); // unknown: it never matches an outcome filter
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(OUTCOME_FETCHES, todo.length) }, worker));
  }

  function matchesFilters(rec) {
    if (app.filters.queue && rec.queue !== app.filters.queue) return false;
    if (app.filters.outcome && app.outcomes.get(rec.id) !== app.filters.outcome) return false;
    return true;
  }

  function renderList() {
    const shown = app.items.filter(matchesFilters);
    const openId = app.current && app.current.recording.id;
    setChildren($("call-list"), shown.map((rec) => renderListRow(rec, rec.id === openId)));
    $("more").hidden = !app.hasMore;
    if (!shown.length) setListStatus(app.items.length ? "No call matches these filters." : "No recorded calls.");
    else setListStatus(`${shown.length} recording${shown.length === 1 ? "" : "s"}${app.hasMore ? " (more below)" : ""}`);
  }

  function renderListRow(rec, open) {
    const caller = rec.caller_name || rec.caller_number || "Unknown caller";
    const facts = [
      severalPbxes() && rec.pbx ? `PBX ${rec.pbx}` : null,
      rec.queue ? `Queue ${rec.queue}` : "No queue",
      rec.operator ? `ext ${rec.operator}` : "PBX recording",
      rec.duration_seconds != null ? formatClock(rec.duration_seconds) : null,
    ].filter(Boolean);
    const button = el(
      "button",
      { type: "button", class: "call-row", "data-id": rec.id, "data-pbx": rec.pbx || "",
        "aria-current": open ? "true" : null },
      el("span", { class: "row-when" }, formatWhen(rec.started_at)),
      el("span", { class: "row-caller" }, caller),
      rec.caller_name && rec.caller_number ? el("span", { class: "row-number" }, rec.caller_number) : null,
      el("span", { class: "row-facts" }, facts.join(" · ")),
      rec.audio_url ? null : el("span", { class: "badge badge-warn row-status" }, rec.audio_badge || "no audio"),
    );
    button.addEventListener("click", () => openRecording(rec.id, { reveal: true }));
    return el("li", {}, button);
  }

  // ---- one recording ----------------------------------------------------------------

  // Stacked (narrow screens) the call opens below the list: bring it into view.
  const STACKED = window.matchMedia("(max-width: 900px)");

  async function openRecording(id, { reveal = false } = {}) {
    const token = ++app.openToken;
    if (window.location.hash !== `#recording=${id}`) window.history.replaceState(null, "", `#recording=${id}`);
    let detail;
    try {
      detail = await getJson(`/api/recordings/${encodeURIComponent(id)}`);
    } catch (err) {
      if (token !== app.openToken) return;
      showPlaceholder(`Could not open the recording: ${err.message}`);
      return;
    }
    if (token !== app.openToken) return; // the reviewer clicked another call meanwhile
    app.current = detail;
    if (detail.call) app.outcomes.set(detail.recording.id, detail.call.outcome || null);
    $("placeholder").hidden = true;
    $("detail-body").hidden = false;
    renderCallerCard(detail);
    loadAudio(detail.recording);
    renderTimeline();
    renderEvents();
    renderComments();
    renderScoreCard();
    resetCommentForm();
    renderList(); // moves the "open" mark
    if (reveal && STACKED.matches) $("detail").scrollIntoView({ block: "start" });
    else if (reveal) $("detail").scrollTop = 0; // beside the list: the new call from its top
  }

  function showPlaceholder(text) {
    app.current = null;
    $("detail-body").hidden = true;
    $("placeholder").hidden = false;
    $("placeholder").textContent = text;
  }

  // The caller card: who called, from the call log (the CRM card is the console's).
  function renderCallerCard(detail) {
    const rec = detail.recording;
    const call = detail.call || {};
    const number = call.caller_number || rec.caller_number;
    const name = call.caller_name || rec.caller_name || number || "Unknown caller";
    const badges = [];
    if (call.queue || rec.queue) badges.push(el("span", { class: "badge" }, `Queue ${call.queue || rec.queue}`));
    if (call.outcome) badges.push(el("span", { class: `badge outcome outcome-${call.outcome}` }, outcomeWords(call.outcome)));
    if ((call.transfers || []).length) badges.push(el("span", { class: "badge badge-info" }, "transferred"));
    if (rec.paused && rec.paused.length) badges.push(el("span", { class: "badge badge-warn" }, "partly paused"));
    const facts = [
      ["Operator", rec.operator ? `ext ${rec.operator}` : "—"],
      ["Answered by", call.answered_by ? `ext ${call.answered_by}` : "—"],
      ["Waited", call.wait_seconds != null ? formatClock(call.wait_seconds) : "—"],
      ["Talked", call.talk_seconds != null ? formatClock(call.talk_seconds) : "—"],
      ...(severalPbxes() ? [["PBX", rec.pbx || "—"]] : []),
      ["Call", `${rec.call_id} #${rec.seq}`],
      ["Recorded", formatWhen(rec.started_at)],
    ];
    setChildren($("caller-card"), [
      el("div", { class: "identity" },
        el("h2", { class: "caller-name" }, name),
        name !== number && number ? el("span", { class: "number" }, number) : null,
        el("div", { class: "badges" }, ...badges)),
      el("dl", { class: "facts" }, ...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
    ]);
  }

  // ---- the player ---------------------------------------------------------------------

  function loadAudio(rec) {
    const audio = $("audio");
    audio.pause();
    app.duration = Number(rec.duration_seconds) || 0;
    const playable = Boolean(rec.audio_url);
    $("no-audio").hidden = playable;
    $("no-audio").textContent = playable ? "" : rec.audio_note || "No audio to play.";
    $("play").disabled = !playable;
    $("download").hidden = !playable;
    if (playable) {
      $("download").setAttribute("href", `${rec.audio_url}?download=1`);
      audio.src = rec.audio_url; // the browser asks with Range: seeking fetches only what it needs
      audio.playbackRate = Number($("speed").value) || 1;
    } else {
      audio.removeAttribute("src");
      audio.load();
    }
    $("rec-meta").textContent = rec.operator ? `ext ${rec.operator}'s leg` : "PBX recording";
    $("length").textContent = formatClock(app.duration);
    showPosition(0);
  }

  // The file is the truth for seeking: once the browser read its header, use its length.
  function onMetadata() {
    const d = $("audio").duration;
    if (Number.isFinite(d) && d > 0 && Math.abs(d - app.duration) > 0.05) {
      app.duration = d;
      $("length").textContent = formatClock(d);
      renderTimeline();
      renderEvents();
    }
  }

  function showPosition(seconds) {
    const pct = percentOf(seconds);
    $("played").style.width = `${pct}%`;
    $("playhead").style.left = `${pct}%`;
    $("now").textContent = formatClock(seconds);
    const track = $("track");
    track.setAttribute("aria-valuemax", String(Math.round(app.duration)));
    track.setAttribute("aria-valuenow", String(Math.round(seconds)));
    track.setAttribute("aria-valuetext", formatClock(seconds));
    if (!app.stamp.frozen) setStamp(seconds, false);
  }

  function seek(seconds) {
    const audio = $("audio");
    const target = Math.min(Math.max(0, seconds), app.duration || 0);
    if (audio.getAttribute("src")) audio.currentTime = target;
    showPosition(target);
  }

  function togglePlay() {
    const audio = $("audio");
    if (audio.paused) {
      audio.play().catch((err) => {
        $("no-audio").hidden = false;
        $("no-audio").textContent = `The audio does not play: ${err.message}`;
      });
    } else {
      audio.pause();
    }
  }

  function showPlaying() {
    const playing = !$("audio").paused;
    $("play").textContent = playing ? "❚❚ Pause" : "▶ Play";
    $("play").setAttribute("aria-label", playing ? "Pause" : "Play");
  }

  // A click anywhere on the bar seeks there.
  function onTrackClick(event) {
    const box = $("track").getBoundingClientRect();
    if (box.width <= 0) return;
    seek(((event.clientX - box.left) / box.width) * app.duration);
  }

  // The bar is a slider for the keyboard too: arrows step, Home/End jump, space plays.
  function onTrackKey(event) {
    const now = $("audio").currentTime || 0;
    const moves = {
      ArrowLeft: now - KEY_STEP_SECONDS,
      ArrowRight: now + KEY_STEP_SECONDS,
      Home: 0,
      End: app.duration,
    };
    if (event.key in moves) seek(moves[event.key]);
    else if (event.key === " ") togglePlay();
    else return;
    event.preventDefault();
  }

  function onAudioError() {
    if (!app.current || !app.current.recording.audio_url) return;
    $("no-audio").hidden = false;
    $("no-audio").textContent = "The audio could not be loaded (gone, or no longer yours to hear).";
  }

  // ---- the bar: paused spans, event pins above, comment dots below --------------------

  function renderTimeline() {
    const detail = app.current;
    if (!detail) return;
    renderPausedSpans(detail.recording.paused || []);
    renderEventPins(detail.timeline || []);
    renderCommentDots(detail.comments || []);
  }

  // Paused spans are silence in the file (the caller was dictating card data): hatched.
  function renderPausedSpans(spans) {
    const nodes = spans.map((span) => {
      const end = span.end == null ? app.duration : span.end;
      const title = `Recording paused ${formatClock(span.start)}–${formatClock(end)} (card data: not recorded)`;
      return el("div", {
        class: "span-paused",
        title,
        "data-start": span.start,
        "data-end": end,
        "data-left": percentOf(span.start).toFixed(3),
        "data-width": (percentOf(end) - percentOf(span.start)).toFixed(3),
      }, percentOf(end) - percentOf(span.start) > 6 ? el("span", { class: "span-label" }, "paused") : null);
    });
    setChildren($("spans"), nodes);
    placeByData($("spans"));
  }

  // Pins for the call's events inside the recording, with a tick through the bar each.
  function renderEventPins(timeline) {
    const pins = [];
    const ticks = [];
    for (const item of timeline) {
      if (!PINNED.has(item.event) || !inRecording(item.offset_seconds)) continue;
      const pct = percentOf(item.offset_seconds).toFixed(3);
      const pin = el(
        "button",
        {
          type: "button",
          class: `pin pin-${item.event}`,
          "data-event": item.event,
          "data-at": item.offset_seconds,
          "data-left": pct,
          title: `${formatClock(item.offset_seconds)} ${eventText(item)}`,
        },
        el("span", { class: "pin-label" }, shortEventText(item)),
      );
      pin.addEventListener("click", () => seek(item.offset_seconds));
      pins.push(pin);
      ticks.push(el("span", { class: `tick tick-${item.event}`, "data-left": pct }));
    }
    setChildren($("event-lane"), pins);
    setChildren($("ticks"), ticks);
    placeByData($("event-lane"));
    placeByData($("ticks"));
    layoutPinLabels();
  }

  // Labels are placed by their real widths (they depend on the font and the bar's
  // width): one that would run past the bar's end hangs left of its pin; one that would
  // overlap the label before it in its row goes up a row (a longer stem).
  function layoutPinLabels() {
    const lane = $("event-lane");
    const laneWidth = lane.getBoundingClientRect().width;
    if (!laneWidth) return; // not laid out (hidden): the next render or resize does it
    const rowEnds = Array(PIN_ROWS).fill(-Infinity);
    for (const pin of lane.children) {
      const width = pin.querySelector(".pin-label").getBoundingClientRect().width;
      const x = (laneWidth * Number(pin.dataset.left)) / 100;
      const atEnd = x + width > laneWidth;
      const [from, to] = atEnd ? [x - width, x] : [x, x + width];
      let row = rowEnds.findIndex((end) => from >= end + LABEL_GAP_PX);
      if (row < 0) row = rowEnds.indexOf(Math.min(...rowEnds)); // all crowded: the emptiest
      rowEnds[row] = to;
      pin.dataset.row = String(row);
      if (atEnd) pin.dataset.align = "end";
      else delete pin.dataset.align;
    }
    lane.dataset.rows = String(Math.max(1, rowEnds.filter((end) => end > -Infinity).length));
  }

  function renderCommentDots(comments) {
    const dots = comments.map((c) => {
      const dot = el("button", {
        type: "button",
        class: "dot",
        "data-at": c.at_seconds,
        "data-left": percentOf(c.at_seconds).toFixed(3),
        title: `${formatClock(c.at_seconds)} — ${c.text}`,
        "aria-label": `Comment at ${formatClock(c.at_seconds)}`,
      });
      dot.addEventListener("click", () => seek(c.at_seconds));
      return dot;
    });
    setChildren($("comment-lane"), dots);
    placeByData($("comment-lane"));
  }

  // Positions come from data-* attributes and are applied through the CSSOM: the strict
  // CSP refuses style="" attributes, not element.style.
  function placeByData(container) {
    for (const node of container.children) {
      if (node.dataset.left !== undefined) node.style.left = `${node.dataset.left}%`;
      if (node.dataset.width !== undefined) node.style.width = `${node.dataset.width}%`;
    }
  }

  // ---- events list beside the bar -------------------------------------------------------

  function eventText(item) {
    const ext = (v) => (v ? `ext ${v}` : "?");
    switch (item.event) {
      case "entered":
        return item.queue ? `Entered queue ${item.queue}` : "Call came in";
      case "rung":
        return `Rang ${ext(item.operator)}`;
      case "answered":
        return `Answered by ${ext(item.operator)}`;
      case "transferred":
        return `Transferred${item.kind ? ` (${item.kind})` : ""} ${ext(item.from)} → ${ext(item.to)}`;
      case "hung_up":
        return item.outcome ? `Hung up (${outcomeWords(item.outcome)})` : "Hung up";
      case "recording_started":
        return item.operator ? `Recording started (${ext(item.operator)})` : "Recording started";
      default:
        return EVENT_NAMES[item.event] || item.event;
    }
  }

  function shortEventText(item) {
    if (item.event === "rung" || item.event === "answered") return `${EVENT_NAMES[item.event]} ${item.operator || ""}`.trim();
    return EVENT_NAMES[item.event] || item.event;
  }

  // Every event, in order; those inside the recording seek, the others say where they fell.
  function renderEvents() {
    const items = (app.current && app.current.timeline) || [];
    const rows = items.map((item) => {
      const inside = inRecording(item.offset_seconds);
      const when = el("span", { class: "ev-time" }, formatClock(item.offset_seconds));
      const what = el("span", { class: "ev-text" }, eventText(item));
      if (!inside) {
        const where = item.offset_seconds < 0 ? "before the recording" : "after the recording";
        return el("li", { class: `ev ev-${item.event} ev-outside`, "data-event": item.event },
          when, what, el("span", { class: "ev-where" }, where));
      }
      const button = el("button", { type: "button", class: "ev-seek", "data-at": item.offset_seconds }, when, what);
      button.addEventListener("click", () => seek(item.offset_seconds));
      return el("li", { class: `ev ev-${item.event}`, "data-event": item.event }, button);
    });
    setChildren($("event-list"), rows.length ? rows : [el("li", { class: "empty-row" }, "No events known for this call.")]);
  }

  // ---- comments -------------------------------------------------------------------------

  function renderComments() {
    const comments = [...((app.current && app.current.comments) || [])].sort((a, b) => a.at_seconds - b.at_seconds);
    const rows = comments.map((c) =>
      window.Callbridge.commentRow(c, (at) => {
        seek(at);
        $("audio").play().catch(() => {});
      }),
    );
    setChildren($("comment-list"), rows.length ? rows : [el("li", { class: "empty-row" }, "No comments yet.")]);
    renderCommentDots(comments);
  }

  // The stamp follows playback until the reviewer starts typing: then it keeps the
  // moment he heard what he is writing about ("use the current time" re-stamps).
  function setStamp(seconds, frozen) {
    app.stamp = { at: Math.max(0, seconds), frozen };
    $("stamp").textContent = formatClock(app.stamp.at);
    $("stamp").dataset.at = app.stamp.at.toFixed(1);
  }

  function resetCommentForm() {
    $("comment-text").value = "";
    $("comment-status").textContent = "";
    setStamp($("audio").currentTime || 0, false);
  }

  async function addComment(event) {
    event.preventDefault();
    const text = $("comment-text").value.trim();
    if (!text || !app.current) {
      $("comment-status").textContent = "Write the comment first.";
      return;
    }
    const id = app.current.recording.id;
    $("comment-add").disabled = true;
    $("comment-status").textContent = "Saving…";
    try {
      const saved = await postJson(`/api/recordings/${encodeURIComponent(id)}/comments`, {
        at_seconds: Math.round(app.stamp.at * 10) / 10,
        text,
      });
      if (app.current && app.current.recording.id === id) {
        app.current.comments = [...(app.current.comments || []), saved];
        renderComments();
        resetCommentForm();
        $("comment-status").textContent = `Added at ${formatClock(saved.at_seconds)}`;
      }
    } catch (err) {
      $("comment-status").textContent = `Not saved: ${err.message}`;
    } finally {
      $("comment-add").disabled = false;
    }
  }

  // ---- the QA score card -----------------------------------------------------------------

  const myCard = () => ((app.current && app.current.scores) || []).find((c) => app.me && c.reviewer === app.me.user);

  // One row per configured criterion, filled with this reviewer's earlier card if any.
  function renderScoreCard() {
    const mine = myCard();
    const rows = app.criteria.map((c, i) => {
      const input = el("input", {
        type: "number",
        id: `crit-${i}`,
        class: "points",
        min: 0,
        max: c.max_points,
        step: 1,
        required: true,
        inputmode: "numeric",
        "data-name": c.name,
      });
      if (mine && Number.isInteger(mine.scores[c.name])) input.value = String(mine.scores[c.name]);
      input.addEventListener("input", showScoreTotal);
      return el(
        "tr",
        { class: "criterion" },
        el("th", { scope: "row" }, el("label", { for: `crit-${i}` }, c.name)),
        el("td", {}, input, el("span", { class: "of" }, `/ ${c.max_points}`)),
      );
    });
    setChildren($("criteria"), rows.length ? rows : [el("tr", {}, el("td", { colspan: 2 }, "No criteria are configured."))]);
    $("score-comment").value = (mine && mine.comment) || "";
    $("score-status").textContent = mine ? `Your card from ${formatWhen(mine.updated_at)}` : "";
    showScoreTotal();
    renderOtherCards();
  }

  function readScores() {
    const scores = {};
    for (const input of $("criteria").querySelectorAll("input.points")) {
      if (input.value !== "") scores[input.dataset.name] = Number(input.value);
    }
    return scores;
  }

  function showScoreTotal() {
    const scores = readScores();
    const max = app.criteria.reduce((sum, c) => sum + c.max_points, 0);
    const total = Object.values(scores).reduce((sum, v) => sum + (Number.isFinite(v) ? v : 0), 0);
    const pct = max ? ((100 * total) / max).toFixed(1) : "0.0";
    $("score-total").textContent = `${total} / ${max} (${pct} %)`;
  }

  async function saveScore(event) {
    event.preventDefault();
    if (!app.current) return;
    const form = $("score-form");
    if (!form.reportValidity()) return; // every criterion scored, each within its points
    const id = app.current.recording.id;
    const comment = $("score-comment").value.trim();
    $("score-save").disabled = true;
    $("score-status").textContent = "Saving…";
    try {
      const card = await postJson(`/api/recordings/${encodeURIComponent(id)}/score`, {
        scores: readScores(),
        comment: comment || null,
      });
      if (app.current && app.current.recording.id === id) {
        app.current.scores = [...(app.current.scores || []).filter((c) => c.reviewer !== card.reviewer), card];
        renderOtherCards();
        $("score-status").textContent = `Saved: ${card.total} / ${card.max_total} (${card.percent} %)`;
      }
    } catch (err) {
      $("score-status").textContent = `Not saved: ${err.message}`;
    } finally {
      $("score-save").disabled = false;
    }
  }

  // Every reviewer's card on this recording, the reviewer's own marked.
  function renderOtherCards() {
    const cards = (app.current && app.current.scores) || [];
    if (!cards.length) {
      setChildren($("other-cards"), [el("p", { class: "muted" }, "Not scored yet.")]);
      return;
    }
    const rows = cards.map((c) =>
      el(
        "li",
        { class: "card-row", "data-reviewer": c.reviewer },
        el("span", { class: "cr-who" }, app.me && c.reviewer === app.me.user ? `${c.reviewer} (you)` : c.reviewer),
        el("span", { class: "cr-total" }, `${c.total} / ${c.max_total}`),
        el("span", { class: "cr-pct" }, `${c.percent} %`),
        el("span", { class: "cr-when" }, formatWhen(c.updated_at)),
      ),
    );
    setChildren($("other-cards"), [el("h4", {}, "Score cards on this call"), el("ul", { class: "card-rows" }, ...rows)]);
  }

  // ---- start ------------------------------------------------------------------------------

  function wire() {
    $("signout").addEventListener("click", window.Callbridge.signOut);
    $("filters").addEventListener("submit", (event) => {
      event.preventDefault();
      loadList(true);
    });
    // "Clear" resets the fields first (the reset event fires before they change).
    $("filters").addEventListener("reset", () => window.setTimeout(() => loadList(true), 0));
    $("more").addEventListener("click", () => loadList(false));
    const audio = $("audio");
    audio.addEventListener("loadedmetadata", onMetadata);
    audio.addEventListener("durationchange", onMetadata);
    audio.addEventListener("timeupdate", () => showPosition(audio.currentTime));
    audio.addEventListener("seeked", () => showPosition(audio.currentTime));
    audio.addEventListener("play", showPlaying);
    audio.addEventListener("pause", showPlaying);
    audio.addEventListener("ended", showPlaying);
    audio.addEventListener("error", onAudioError);
    $("play").addEventListener("click", togglePlay);
    $("speed").addEventListener("change", () => {
      audio.playbackRate = Number($("speed").value) || 1;
    });
    $("track").addEventListener("click", onTrackClick);
    $("track").addEventListener("keydown", onTrackKey);
    $("comment-form").addEventListener("submit", addComment);
    $("comment-text").addEventListener("input", () => {
      if (!app.stamp.frozen) setStamp(audio.currentTime || 0, true);
    });
    $("restamp").addEventListener("click", () => setStamp(audio.currentTime || 0, $("comment-text").value !== ""));
    $("score-form").addEventListener("submit", saveScore);
    window.addEventListener("hashchange", openFromHash);
    window.addEventListener("resize", layoutPinLabels);
  }

  function openFromHash() {
    const m = /^#recording=([0-9]{1,15})$/.exec(window.location.hash);
    if (m && !(app.current && String(app.current.recording.id) === m[1])) openRecording(Number(m[1]));
  }

  async function start() {
    wire();
    try {
      app.me = await window.Callbridge.loadSession();
      showWhoami(app.me);
      app.criteria = (await getJson("/api/reviews/criteria")).criteria || [];
    } catch (err) {
      setListStatus(`Could not start: ${err.message}`, true);
      return;
    }
    await loadList(true);
    openFromHash();
  }

  start();
})();
