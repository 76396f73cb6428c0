// Callbridge reports: the manager's page (/reports), for supervisors and admins.
//
// Contract: docs/reports_api.md. GET /api/reports?period=today|yesterday|last7|range
// [&from=YYYY-MM-DD&to=YYYY-MM-DD][&queue=NAME][&pbx=ID]&interval=15|30|60|day|weekday answers the
// whole report as JSON (its `pbxes`: the configured PBXes; with several, the PBX picker shows,
// operators name their PBX and the queues' table adds each PBX's totals) (fractions 0..1, seconds, null where no call is behind a figure);
// GET /api/reports/export.csv?table=NAME&<the same query> one table as CSV. The page keeps
// its query in its own address (/reports?...), so a link shows the same report again.
// The staffing plan (GET /api/reports/staffing?day=typical|YYYY-MM-DD[&weeks=N]...) replaces
// the staffing panel's rows when picked; the address keeps it as plan= and weeks=.
//
// Times: the API writes every interval start in the report's time zone, with its offset
// ("2026-11-24T11:00:00+03:00"); the page shows the wall-clock part as written and never
// converts it to the browser's zone, so a manager abroad sees the call centre's hours.
//
// Charts: Chart.js (window.Chart, vendored in /static/vendor/, MIT), drawn on <canvas>;
// no animation, a white background so an exported PNG drops onto a slide as it is.
//
// Safety rule: queue, operator and every other name from the server is data. It reaches
// the page through textContent / text nodes / setAttribute only (window.Callbridge.el),
// never innerHTML; on a canvas it is only ever drawn as text.
"use strict";

(() => {
  const { $, el, setChildren } = window.Callbridge;
  const API = "/api/reports";
  const EXPORT = "/api/reports/export.csv";
  const PLAN_API = "/api/reports/staffing";
  const PLAN_EXPORT = "/api/reports/staffing.csv";
  const PLAN_INTERVALS = ["15", "30", "60"];
  const PERIODS = ["today", "yesterday", "last7", "range"];
  const INTERVALS = ["15", "30", "60", "day", "weekday"];
  const INTERVAL_WORDS = { 15: "per 15 minutes", 30: "per 30 minutes", 60: "per hour", day: "per day", weekday: "per weekday" };
  const WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
  const WEEKDAY_NAMES = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const DATE_RE = /^\d{4}-\d{2}-\d{2}$/;
  const PBX_RE = /^[a-z0-9][a-z0-9_-]{0,31}$/;
  const COLOR = {
    answered: "#2f6fdb",
    abandoned: "#d92d20",
    unanswered: "#e08a00",
    sl: "#1f9d55",
    needed: "#17202b",
    agents: "#8a94a3",
    bar: "#2f6fdb",
    talk: "#7a4fd6",
    grid: "#e6eaf0",
    ink: "#5b6675",
    verdict: { under: "#d92d20", over: "#e08a00", ok: "#1f9d55", unknown: "#b8c1cc" },
  };
  // Staffing verdicts in words (the colour is never the only sign).
  const VERDICTS = { under: "under-staffed", over: "over-staffed", ok: "as needed", unknown: "no member data" };
  // The headline tiles, each with the definition keys its footnote may come from (the
  // first one `definitions` has).
  const TILES = [
    { id: "service_level", label: "Service level", defs: ["service_level"] },
    { id: "abandon_rate", label: "Abandon rate", defs: ["abandon_rate"] },
    { id: "asa", label: "ASA", title: "Average speed of answer", defs: ["asa_seconds", "asa", "average_speed_of_answer"] },
    { id: "aht", label: "AHT", title: "Average handling time", defs: ["aht_seconds", "aht", "average_handling_time"] },
    { id: "calls", label: "Calls", defs: ["offered", "calls"] },
  ];
  // How a definition's key reads as a term (others: underscores become spaces).
  const TERMS = {
    offered: "Calls (offered)",
    target_seconds: "Target (T)",
    service_level: "Service level",
    "service_level_by_definition.answered": "SL of answered",
    "service_level_by_definition.answered_and_abandoned": "SL of answered + abandoned",
    "service_level_by_definition.offered": "SL of offered",
    asa_seconds: "ASA",
    aht_seconds: "AHT",
    wait_p90_seconds: "90% wait",
    longest_wait_seconds: "Longest wait",
    talk_seconds_avg: "Average talk time",
    short_abandoned: "Short abandons",
    wait_distribution: "Wait before an answer or hang-up",
    talk_distribution: "Talk time",
    by_hour_of_day: "Calls per day by hour",
    by_weekday: "Calls per day by weekday",
    "operators.talk_seconds": "Talk time",
    "operators.aht_seconds": "AHT",
    "operators.logged_in_seconds": "Logged in",
    "operators.paused_seconds": "Paused",
    "staffing.agents": "Agents needed",
    "staffing.staff": "Staff needed",
    "staffing.staff_actual": "Available",
    "staffing.expected_service_level": "Expected SL",
    "staffing.service_level_with_actual": "SL with those available",
  };
  // The definitions' groups, by the key's prefix ("operators.rung").
  const GROUPS = [["", "Calls and service level"], ["operators", "Operators"], ["staffing", "Staffing"]];

  const app = {
    query: readQuery(window.location.search),
    report: null,
    plan: null, // the staffing plan on screen (GET /api/reports/staffing), or null
    planSeq: 0,
    seq: 0, // the latest request; an older answer arriving late is dropped
    charts: {}, // name -> Chart
    defIds: new Map(), // definition key -> footnote element id
  };

  // ---- query ---------------------------------------------------------------------------

  function readQuery(search) {
    const params = new URLSearchParams(search);
    const period = PERIODS.includes(params.get("period")) ? params.get("period") : "today";
    const interval = INTERVALS.includes(params.get("interval")) ? params.get("interval") : "60";
    const date = (name) => (DATE_RE.test(params.get(name) || "") ? params.get(name) : "");
    const plan = params.get("plan") === "typical" ? "typical" : date("plan");
    const weeks = DATE_RE.test(plan) && /^\d{1,2}$/.test(params.get("weeks") || "") ? params.get("weeks") : "";
    const pbx = PBX_RE.test(params.get("pbx") || "") ? params.get("pbx") : "";
    return { period, from: date("from"), to: date("to"), queue: params.get("queue") || "", pbx, interval, plan,
      weeks };
  }

  // The page's own address: the report's query, then the staffing plan if one is picked.
  function pageParams(q) {
    const params = queryParams(q);
    if (q.plan) params.set("plan", q.plan);
    if (q.plan && q.plan !== "typical" && q.weeks) params.set("weeks", q.weeks);
    return params;
  }

  // The staffing plan's query: the typical day of the period on screen, or a chosen day from
  // its weekday's history; per the page's interval (per hour for day / weekday).
  function planParams(q) {
    const params = new URLSearchParams();
    params.set("day", q.plan);
    if (q.plan === "typical") {
      params.set("period", q.period);
      if (q.period === "range") {
        params.set("from", q.from);
        params.set("to", q.to);
      }
    } else if (q.weeks) {
      params.set("weeks", q.weeks);
    }
    if (q.queue) params.set("queue", q.queue);
    if (q.pbx) params.set("pbx", q.pbx);
    params.set("interval", PLAN_INTERVALS.includes(q.interval) ? q.interval : "60");
    return params;
  }

  // The API's query for `q`, in one fixed order (the CSV links carry the same).
  function queryParams(q) {
    const params = new URLSearchParams();
    params.set("period", q.period);
    if (q.period === "range") {
      params.set("from", q.from);
      params.set("to", q.to);
    }
    if (q.queue) params.set("queue", q.queue);
    if (q.pbx) params.set("pbx", q.pbx);
    params.set("interval", q.interval);
    return params;
  }

  // ---- formatting ------------------------------------------------------------------------

  const pad = (n) => String(n).padStart(2, "0");
  const isNum = (v) => typeof v === "number" && Number.isFinite(v);
  const NONE = "—"; // a figure with no calls behind it

  function count(v) {
    return isNum(v) ? v.toLocaleString("en-US") : NONE;
  }

  function pct(v) {
    return isNum(v) ? `${(v * 100).toFixed(1)}%` : NONE;
  }

  // "8 s", "3 min 05 s", "1 h 05 min": a manager reads these aloud.
  function secs(v) {
    if (!isNum(v)) return NONE;
    const s = Math.round(v);
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${pad(s % 60)} s`;
    return `${Math.floor(s / 3600)} h ${pad(Math.floor((s % 3600) / 60))} min`;
  }

  // A headline figure with its units set smaller ("3 min 06 s", "86.6%"); the text is the same.
  function withUnits(text) {
    return String(text).split(/(\s*[^\d\s.,—]+)/).filter(Boolean)
      .map((part) => (/\d|—/.test(part) ? part : el("span", { class: "unit" }, part)));
  }

  function perDay(v) {
    return isNum(v) ? v.toFixed(1) : NONE;
  }

  // The wall-clock parts of an API time as written ("2026-11-24T11:00:00+03:00").
  function parts(text) {
    const m = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2}))?/.exec(String(text || ""));
    if (!m) return null;
    const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
    const weekday = (new Date(Date.UTC(y, mo - 1, d)).getUTCDay() + 6) % 7; // Mon = 0
    return { y, mo, d, weekday, date: `${m[1]}-${m[2]}-${m[3]}`, time: m[4] ? `${m[4]}:${m[5]}` : null };
  }

  // The calendar day before `date` (YYYY-MM-DD): the API's `to` is the exclusive end.
  function dayBefore(date) {
    const p = parts(date);
    if (!p) return "";
    const t = new Date(Date.UTC(p.y, p.mo - 1, p.d - 1));
    return `${t.getUTCFullYear()}-${pad(t.getUTCMonth() + 1)}-${pad(t.getUTCDate())}`;
  }

  const dayText = (p, year) => `${WEEKDAYS[p.weekday]} ${p.d} ${MONTHS[p.mo - 1]}${year ? ` ${p.y}` : ""}`;

  // The period's days as the report counts them: first and last included.
  function periodDays(period) {
    const first = parts(period && period.from);
    const end = parts(period && period.to);
    if (!first) return null;
    let last = first;
    if (end) last = end.time && end.time !== "00:00" ? end : parts(dayBefore(end.date)) || first;
    return { first, last, oneDay: first.date === last.date };
  }

  function periodText(period) {
    const days = periodDays(period);
    if (!days) return "Report";
    if (days.oneDay) return dayText(days.first, true);
    return `${dayText(days.first, days.first.y !== days.last.y)} – ${dayText(days.last, true)}`;
  }

  // An interval's label: its time of day, its day, or its weekday, as the interval asks.
  function intervalLabel(row, report) {
    const kind = String((report.period && report.period.interval) || app.query.interval);
    const p = parts(row.start);
    if (kind === "weekday") {
      if (typeof row.name === "string" && row.name) return row.name;
      if (isNum(row.weekday)) return WEEKDAYS[row.weekday] || String(row.weekday);
      return p ? WEEKDAYS[p.weekday] : String(row.start || "");
    }
    if (!p) return String(row.start || ""); // "11:00" of a typical day, or whatever came
    if (kind === "day" || !p.time) return dayText(p, false);
    const days = periodDays(report.period);
    return days && !days.oneDay ? `${WEEKDAYS[p.weekday]} ${p.d} ${p.time}` : p.time;
  }

  // ---- definitions (footnotes and tooltips) ------------------------------------------------

  function definitionKey(keys) {
    const defs = (app.report && app.report.definitions) || {};
    return keys.find((k) => typeof defs[k] === "string" && defs[k]) || null;
  }

  function termOf(key) {
    if (TERMS[key]) return TERMS[key];
    const last = key.slice(key.lastIndexOf(".") + 1).replace(/_seconds$/, "").replace(/_/g, " ");
    return last.replace(/^./, (c) => c.toUpperCase());
  }

  const groupOf = (key) => (key.includes(".") && !key.startsWith("service_level") ? key.split(".")[0] : "");

  // Every definition the report sent, numbered, in groups; the page's figures point here.
  function renderDefinitions(defs) {
    app.defIds = new Map();
    const entries = Object.entries(defs || {}).filter(([, text]) => typeof text === "string");
    const known = GROUPS.map(([g]) => g);
    const groups = [...GROUPS, ...[...new Set(entries.map(([k]) => groupOf(k)))].filter((g) => !known.includes(g)).map((g) => [g, g])];
    const blocks = [];
    for (const [group, title] of groups) {
      const items = [];
      for (const [key, text] of entries.filter(([k]) => groupOf(k) === group)) {
        const n = app.defIds.size + 1;
        const id = `def-${n}`;
        app.defIds.set(key, { id, n });
        items.push(el("div", { class: "def", id, "data-key": key },
          el("dt", {}, el("span", { class: "fn" }, String(n)), termOf(key)), el("dd", {}, text)));
      }
      if (items.length) blocks.push(el("section", { class: "def-group" }, el("h3", {}, title), el("dl", { class: "defs" }, ...items)));
    }
    setChildren($("defs"), blocks);
    // Table headings: the definition as the tooltip; chart notes: the definition, then its mark.
    for (const node of document.querySelectorAll("[data-def]")) {
      const text = defs && typeof defs[node.dataset.def] === "string" ? defs[node.dataset.def] : null;
      if (node.tagName === "TH") {
        if (text) node.setAttribute("title", text);
        else node.removeAttribute("title");
        node.classList.toggle("has-def", Boolean(text));
      } else {
        setChildren(node, text ? [text, footnote(node.dataset.def)] : []);
      }
    }
  }

  // A footnote mark linking to the definition, and the definition as the tooltip.
  function footnote(key) {
    const def = app.defIds.get(key);
    if (!def) return null;
    return el("a", { class: "fn-mark", href: `#${def.id}`, "aria-label": `definition ${def.n}` }, String(def.n));
  }

  // ---- headline --------------------------------------------------------------------------

  function targetText(report) {
    const targets = report.targets || {};
    const q = report.period && report.period.queue;
    const t = q !== null && q !== undefined && q !== "" ? targets[q] : undefined;
    if (isNum(t)) return `within ${t} s`;
    const all = [...new Set(Object.values(targets).filter(isNum))];
    if (all.length === 1) return `within ${all[0]} s`;
    return all.length ? "within each queue's target" : "";
  }

  function tileValue(id, t, report) {
    switch (id) {
      case "service_level":
        return [pct(t.service_level), ["answered", targetText(report)].filter(Boolean).join(" ")];
      case "abandon_rate":
        return [pct(t.abandon_rate), `${count(t.abandoned)} abandoned, ${count(t.short_abandoned)} of them short`];
      case "asa":
        return [secs(t.asa_seconds), `90% within ${secs(t.wait_p90_seconds)} · longest ${secs(t.longest_wait_seconds)}`];
      case "aht":
        return [secs(t.aht_seconds), `talk ${secs(t.talk_seconds_avg)} on average`];
      default:
        return [count(t.offered), `${count(t.answered)} answered · ${count(t.unanswered)} unanswered`];
    }
  }

  function renderHeadline(report) {
    const t = report.totals || {};
    setChildren($("tiles"), TILES.map((tile) => {
      const key = definitionKey(tile.defs);
      const definition = key ? report.definitions[key] : null;
      const [value, sub] = tileValue(tile.id, t, report);
      return el(
        "div",
        { class: "tile", "data-figure": tile.id, title: definition || tile.title || null },
        el("div", { class: "tile-label" }, tile.label, key ? footnote(key) : null),
        el("div", { class: "tile-value" }, ...withUnits(value)),
        el("div", { class: "tile-sub" }, sub),
      );
    }));

    const chips = [];
    const byDef = t.service_level_by_definition || {};
    const slWords = { answered: "of answered", answered_and_abandoned: "of answered + abandoned", offered: "of offered" };
    for (const [name, value] of Object.entries(byDef)) {
      const key = definitionKey([`service_level_by_definition.${name}`, `service_level_${name}`]);
      chips.push(el("span", { class: "chip", "data-sl": name, title: key ? report.definitions[key] : null },
        `SL ${slWords[name] || name.replace(/_/g, " ")}: `, el("b", {}, pct(value)), key ? footnote(key) : null));
    }
    const reasons = Object.entries(t.unanswered_by_reason || {}).filter(([, n]) => isNum(n) && n > 0);
    if (reasons.length) {
      chips.push(el("span", { class: "chip", "data-field": "reasons", title: definitionKey(["unanswered_by_reason"]) ? report.definitions.unanswered_by_reason : null },
        "Unanswered: ", reasons.map(([r, n]) => `${r.replace(/_/g, " ")} ${count(n)}`).join(", ")));
    }
    if (isNum(t.incomplete) && t.incomplete > 0) {
      chips.push(el("span", { class: "chip", "data-field": "incomplete", title: definitionKey(["incomplete"]) ? report.definitions.incomplete : null },
        `Incomplete: ${count(t.incomplete)}`, footnote("incomplete")));
    }
    setChildren($("breakdown"), chips);
  }

  // ---- tables ------------------------------------------------------------------------------

  const num = (text, attrs) => el("td", { class: "n", ...(attrs || {}) }, text);

  function figureCells(f, target) {
    const reasons = Object.entries(f.unanswered_by_reason || {}).filter(([, n]) => isNum(n) && n > 0);
    return [
      num(isNum(target) ? `${target} s` : NONE),
      num(count(f.offered)),
      num(count(f.answered)),
      num(count(f.abandoned), { title: `of them short: ${count(f.short_abandoned)}` }),
      num(count(f.unanswered), { title: reasons.map(([r, n]) => `${r} ${n}`).join(", ") || null }),
      num(pct(f.service_level)),
      num(pct(f.abandon_rate)),
      num(secs(f.asa_seconds)),
      num(secs(f.wait_p90_seconds)),
      num(secs(f.longest_wait_seconds)),
      num(secs(f.aht_seconds)),
    ];
  }

  function renderQueues(report) {
    const table = $("t-queues");
    const rows = Object.entries(report.by_queue || {}).map(([name, f]) =>
      el("tr", { "data-queue": name }, el("th", { scope: "row", class: "name" }, name),
        ...figureCells(f || {}, (report.targets || {})[name])));
    setChildren(table.tBodies[0], rows.length ? rows : [emptyRow(12)]);
    const total = el("tr", { "data-queue": "" }, el("th", { scope: "row" }, "All queues"),
      ...figureCells(report.totals || {}, null));
    // Several PBXes, all shown: a queue name adds up over them; each PBX's own totals tell them apart.
    const perPbx = severalPbxes(report) && !report.period.pbx ? Object.entries(report.by_pbx || {}).map(([pbx, f]) =>
      el("tr", { "data-pbx": pbx }, el("th", { scope: "row" }, `PBX ${pbx}`), ...figureCells(f || {}, null))) : [];
    setChildren(table.tFoot, [...perPbx, ...(rows.length > 1 || perPbx.length ? [total] : [])]);
  }

  const severalPbxes = (report) => Array.isArray(report.pbxes) && report.pbxes.length > 1;

  function renderOperators(report) {
    const rows = (report.operators || []).map((o) =>
      el("tr", { "data-operator": o.operator, "data-pbx": o.pbx || "" },
        el("th", { scope: "row", class: "name" },
          el("span", { class: "op-name" }, o.name || o.operator || ""),
          o.name || severalPbxes(report)
            ? el("span", { class: "op-ext" }, severalPbxes(report) ? `${o.pbx} · ${o.operator}` : String(o.operator))
            : null),
        num(count(o.rung)), num(count(o.answered)), num(count(o.missed)), num(secs(o.talk_seconds)),
        num(secs(o.aht_seconds)), num(count(o.transfers)), num(secs(o.logged_in_seconds)),
        num(secs(o.paused_seconds)), num(pct(o.occupancy))));
    setChildren($("t-operators").tBodies[0], rows.length ? rows : [emptyRow(10)]);
  }

  function renderIntervalTable(report) {
    const rows = (report.intervals || []).map((r) =>
      el("tr", { "data-start": r.start }, el("th", { scope: "row" }, intervalLabel(r, report)),
        num(count(r.offered)), num(count(r.answered)), num(count(r.abandoned)), num(count(r.unanswered)),
        num(pct(r.service_level)), num(secs(r.asa_seconds)), num(secs(r.aht_seconds))));
    setChildren($("t-intervals").tBodies[0], rows.length ? rows : [emptyRow(8)]);
  }

  // null: no queue member events in the period, so nobody knows who was available.
  function verdictOf(row) {
    return typeof row.verdict === "string" && row.verdict ? row.verdict : "unknown";
  }

  // Operators available on average: "3", "2.8".
  function staffCount(v) {
    if (!isNum(v)) return NONE;
    return Number.isInteger(v) ? count(v) : v.toFixed(1);
  }

  function renderStaffing(report) {
    const staffing = report.staffing || [];
    // Staffing comes per 15 / 30 / 60 minutes only: for days and weekdays the panel says so.
    const none = staffing.length === 0 && !PLAN_INTERVALS.includes(String(report.period && report.period.interval));
    showStaffing(staffing, (r) => intervalLabel(r, report), none, false);
  }

  // The staffing table and note for `rows`: the report's intervals, or a plan's (whose calls
  // are averages: "12.5").
  function showStaffing(rows, label, none, plan) {
    const trs = rows.map((r) => {
      const verdict = verdictOf(r);
      const idle = !r.calls && !r.agents && !r.staff_actual; // nobody called, nobody was needed or there
      return el("tr", { "data-start": r.start || r.time, "data-verdict": verdict, class: idle ? "idle" : null },
        el("th", { scope: "row" }, label(r)),
        num(plan ? perDay(r.calls) : count(r.calls)), num(secs(r.aht_seconds)), num(count(r.agents)),
        num(count(r.staff)), num(staffCount(r.staff_actual)), num(pct(r.expected_service_level)),
        num(pct(r.service_level_with_actual)), num(pct(r.abandon_rate)),
        el("td", { class: "verdict" }, el("span", { class: "verdict-badge" }, VERDICTS[verdict] || verdict)));
    });
    setChildren($("t-staffing").tBodies[0], trs.length ? trs : [emptyRow(10)]);
    $("staffing-panel").dataset.empty = none ? "true" : "false";
    $("staff-none").hidden = !none;
    const under = rows.filter((r) => verdictOf(r) === "under").length;
    const over = rows.filter((r) => verdictOf(r) === "over").length;
    const unknown = rows.filter((r) => verdictOf(r) === "unknown").length;
    const key = definitionKey(["staffing.verdict"]);
    setChildren($("staff-note"), none ? [] : [
      el("span", { class: under ? "count-under" : "" }, `${under} under-staffed`),
      ", ",
      el("span", { class: over ? "count-over" : "" }, `${over} over-staffed`),
      ` of ${rows.length} intervals${unknown ? ` (${unknown} without queue member data)` : ""}. `,
      key ? el("span", { class: "def-inline" }, `Verdict: ${app.report.definitions[key]}`) : null,
      key ? footnote(key) : null,
    ]);
  }

  // ---- the staffing plan -------------------------------------------------------------------

  const shortDay = (date) => {
    const p = parts(date);
    return p ? `${p.d} ${MONTHS[p.mo - 1]}` : String(date);
  };

  function planTitle(plan) {
    if (plan.day === "typical") return `Typical day of ${periodText(plan.period)}`;
    const p = parts(plan.day);
    return p ? `Plan for ${dayText(p, true)}` : `Plan for ${plan.day}`;
  }

  // What the plan averaged: "from 4 Mondays: 9 Nov, 16 Nov, 23 Nov, 30 Nov".
  function planSource(plan) {
    const days = Array.isArray(plan.history_days) ? plan.history_days : [];
    if (!days.length) return "no earlier day with calls to average: nothing to plan from";
    const what = `${plan.day === "typical" ? "day" : WEEKDAY_NAMES[plan.weekday] || "day"}${days.length === 1 ? "" : "s"}`;
    return `from ${days.length} ${what}: ${days.map(shortDay).join(", ")}`;
  }

  function showPlanPicker() {
    const q = app.query;
    $("p-plan").value = q.plan === "typical" ? "typical" : q.plan ? "day" : "";
    $("plan-day").hidden = !q.plan || q.plan === "typical";
    if (q.plan && q.plan !== "typical") $("p-plan-day").value = q.plan;
    $("p-plan-weeks").value = q.weeks;
  }

  async function loadPlan() {
    const seq = ++app.planSeq;
    const q = app.query;
    updateCsvLinks();
    if (!q.plan) {
      app.plan = null;
      setChildren($("plan-note"), []);
      $("staffing-panel").dataset.plan = "";
      if (app.report) {
        renderStaffing(app.report);
        if (window.Chart) chartStaffing(app.report.staffing || [], (r) => intervalLabel(r, app.report));
      }
      return;
    }
    $("plan-note").textContent = "Planning…";
    let resp;
    let body;
    try {
      resp = await fetch(`${PLAN_API}?${planParams(q)}`, {
        credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" },
      });
      if (resp.status === 401) {
        window.Callbridge.goToLogin();
        return;
      }
      body = await resp.json().catch(() => null);
    } catch {
      if (seq === app.planSeq) $("plan-note").textContent = "The server cannot be reached. Try again in a moment.";
      return;
    }
    if (seq !== app.planSeq) return;
    if (!resp.ok || !body || typeof body !== "object" || !Array.isArray(body.staffing)) {
      const why = body && typeof body.error === "string" ? body.error : `HTTP ${resp.status}`;
      $("staffing-panel").dataset.plan = "error";
      $("plan-note").textContent = `The staffing plan could not be made: ${why}`;
      return;
    }
    renderPlan(body);
  }

  function renderPlan(plan) {
    app.plan = plan;
    $("staffing-panel").dataset.plan = plan.day === "typical" ? "typical" : "day";
    const label = (r) => (typeof r.time === "string" ? r.time : intervalLabel(r, app.report || {}));
    setChildren($("plan-note"), [el("b", { class: "plan-title" }, planTitle(plan)), ` — ${planSource(plan)}.`,
      ` Target ${pct(plan.target_fraction)} within ${isNum(plan.target_seconds) ? plan.target_seconds : NONE} s.`]);
    showStaffing(plan.staffing, label, false, true);
    if (window.Chart) chartStaffing(plan.staffing, label);
  }

  // The plan picker: "typical" plans at once; a chosen day waits for its date and "Plan".
  function onPlanChange(event) {
    const which = $("p-plan").value;
    if (which === "day") {
      $("plan-day").hidden = false;
      if (event.target.id === "p-plan" && !$("p-plan-day").value) {
        const days = periodDays(app.report && app.report.period); // the day after the period on screen
        if (days) $("p-plan-day").value = dayAfter(days.last.date);
      }
      if (event.target.id === "p-plan-weeks" && DATE_RE.test(app.query.plan)) applyPlanDay();
      return;
    }
    goPlan(which === "typical" ? "typical" : "", "");
  }

  function applyPlanDay() {
    const day = $("p-plan-day").value;
    if (!DATE_RE.test(day)) {
      $("plan-note").textContent = "Pick the day to plan.";
      return;
    }
    goPlan(day, $("p-plan-weeks").value);
  }

  function goPlan(plan, weeks) {
    app.query = { ...app.query, plan, weeks };
    window.history.replaceState(null, "", `${window.location.pathname}?${pageParams(app.query)}`);
    showPlanPicker();
    loadPlan();
  }

  // The calendar day after `date` (YYYY-MM-DD).
  function dayAfter(date) {
    const p = parts(date);
    if (!p) return "";
    const t = new Date(Date.UTC(p.y, p.mo - 1, p.d + 1));
    return `${t.getUTCFullYear()}-${pad(t.getUTCMonth() + 1)}-${pad(t.getUTCDate())}`;
  }

  function emptyRow(columns) {
    return el("tr", { class: "empty" }, el("td", { colspan: columns }, "No calls in this period."));
  }

  // ---- charts ------------------------------------------------------------------------------

  // A white page behind every chart, so the PNG looks as it does here.
  const whiteBackground = {
    id: "cbWhiteBackground",
    beforeDraw(chart) {
      const { ctx, width, height } = chart;
      ctx.save();
      ctx.globalCompositeOperation = "destination-over";
      ctx.fillStyle = "#ffffff";
      ctx.fillRect(0, 0, width, height);
      ctx.restore();
    },
  };

  function baseOptions(extra) {
    return {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      interaction: { mode: "index", intersect: false },
      plugins: { legend: { position: "bottom", labels: { boxWidth: 14 } }, ...(extra.plugins || {}) },
      datasets: { bar: { maxBarThickness: 90 } },
      scales: extra.scales,
    };
  }

  function drawChart(name, canvasId, config) {
    if (app.charts[name]) app.charts[name].destroy();
    config.plugins = [whiteBackground];
    app.charts[name] = new window.Chart($(canvasId), config);
  }

  const yCalls = (title) => ({
    beginAtZero: true,
    grace: "8%",
    title: { display: true, text: title },
    ticks: { precision: 0 },
    grid: { color: COLOR.grid },
  });

  function chartIntervals(report) {
    const rows = report.intervals || [];
    const value = (k) => rows.map((r) => (isNum(r[k]) ? r[k] : 0));
    drawChart("intervals", "chart-intervals", {
      type: "bar",
      data: {
        labels: rows.map((r) => intervalLabel(r, report)),
        datasets: [
          { type: "line", label: "Service level %", yAxisID: "sl", order: 0, borderColor: COLOR.sl,
            backgroundColor: COLOR.sl, borderWidth: 2, pointRadius: 3, spanGaps: false, clip: 8,
            data: rows.map((r) => (isNum(r.service_level) ? Math.round(r.service_level * 1000) / 10 : null)) },
          { label: "Answered", stack: "calls", backgroundColor: COLOR.answered, order: 1, data: value("answered") },
          { label: "Abandoned", stack: "calls", backgroundColor: COLOR.abandoned, order: 1, data: value("abandoned") },
          { label: "Unanswered", stack: "calls", backgroundColor: COLOR.unanswered, order: 1, data: value("unanswered") },
        ],
      },
      options: baseOptions({
        scales: {
          x: { stacked: true, grid: { display: false } },
          y: { ...yCalls("calls"), stacked: true },
          sl: { position: "right", min: 0, max: 100, title: { display: true, text: "service level %" },
            grid: { drawOnChartArea: false }, ticks: { callback: (v) => `${v}%` } },
        },
      }),
    });
  }

  // A distribution: calls per bucket; split into answered / abandoned / the rest when the
  // buckets say (the wait), one bar otherwise.
  function chartBuckets(name, canvasId, buckets, color, axis, split) {
    const rows = buckets || [];
    const n = (v) => (isNum(v) ? v : 0);
    const canSplit = split && rows.some((b) => isNum(b.answered) || isNum(b.abandoned));
    const datasets = canSplit
      ? [
          { label: "Answered", stack: "c", backgroundColor: COLOR.answered, data: rows.map((b) => n(b.answered)) },
          { label: "Abandoned", stack: "c", backgroundColor: COLOR.abandoned, data: rows.map((b) => n(b.abandoned)) },
          { label: "Unanswered or incomplete", stack: "c", backgroundColor: COLOR.unanswered,
            data: rows.map((b) => Math.max(0, n(b.calls) - n(b.answered) - n(b.abandoned))) },
        ]
      : [{ label: "calls", backgroundColor: color, data: rows.map((b) => n(b.calls)) }];
    drawChart(name, canvasId, {
      type: "bar",
      data: { labels: rows.map((b) => `${b.label} s`), datasets },
      options: baseOptions({
        plugins: { legend: { display: canSplit, position: "bottom", labels: { boxWidth: 14 } } },
        scales: { x: { stacked: true, title: { display: true, text: axis }, grid: { display: false } },
          y: { ...yCalls("calls"), stacked: true } },
      }),
    });
  }

  function chartHours(report) {
    const byHour = new Map((report.by_hour_of_day || []).map((h) => [Number(h.hour), h.calls_per_day]));
    const hours = Array.from({ length: 24 }, (_, h) => h);
    drawChart("hours", "chart-hours", {
      type: "bar",
      data: {
        labels: hours.map(pad),
        datasets: [{ label: "calls per day", backgroundColor: COLOR.bar,
          data: hours.map((h) => (isNum(byHour.get(h)) ? byHour.get(h) : 0)) }],
      },
      options: baseOptions({
        plugins: { legend: { display: false } },
        scales: { x: { title: { display: true, text: "hour of day" }, grid: { display: false } },
          y: { beginAtZero: true, grace: "8%", title: { display: true, text: "calls per day" }, grid: { color: COLOR.grid } } },
      }),
    });
  }

  function chartWeekdays(report) {
    const rows = [...(report.by_weekday || [])].sort((a, b) => a.weekday - b.weekday);
    drawChart("weekdays", "chart-weekdays", {
      type: "bar",
      data: {
        labels: rows.map((r) => (typeof r.name === "string" && r.name ? r.name : WEEKDAYS[r.weekday] || String(r.weekday))),
        datasets: [{ label: "calls per day", backgroundColor: COLOR.bar,
          data: rows.map((r) => (isNum(r.calls_per_day) ? r.calls_per_day : null)) }],
      },
      options: baseOptions({
        plugins: { legend: { display: false } },
        scales: { x: { grid: { display: false } },
          y: { beginAtZero: true, grace: "8%", title: { display: true, text: "calls per day" }, grid: { color: COLOR.grid } } },
      }),
    });
  }

  function chartStaffing(rows, label) {
    const n = (v) => (isNum(v) ? v : null);
    drawChart("staffing", "chart-staffing", {
      type: "bar",
      data: {
        labels: rows.map(label),
        datasets: [
          { type: "line", label: "Agents needed on the phones", order: 0, borderColor: COLOR.agents,
            backgroundColor: COLOR.agents, borderDash: [5, 4], borderWidth: 2, pointRadius: 2, stepped: "middle",
            data: rows.map((r) => n(r.agents)) },
          { label: "Staff needed", order: 1, backgroundColor: COLOR.needed, data: rows.map((r) => n(r.staff)) },
          { label: "Available (red: too few, amber: too many)", order: 1,
            backgroundColor: rows.map((r) => COLOR.verdict[verdictOf(r)] || COLOR.bar),
            data: rows.map((r) => n(r.staff_actual)) },
        ],
      },
      options: baseOptions({
        plugins: {
          legend: { position: "bottom", labels: { boxWidth: 14 } },
          tooltip: { callbacks: { afterBody: (items) => {
            const r = rows[items[0].dataIndex];
            return r ? [`${VERDICTS[verdictOf(r)] || verdictOf(r)}`,
              `expected SL ${pct(r.expected_service_level)}, with those available ${pct(r.service_level_with_actual)}`] : [];
          } } },
        },
        scales: { x: { grid: { display: false } }, y: yCalls("operators") },
      }),
    });
  }

  function renderCharts(report) {
    if (!window.Chart) {
      $("status").textContent = "The charts could not be loaded; the figures and tables are complete.";
      return;
    }
    chartIntervals(report);
    chartBuckets("wait", "chart-wait", report.wait_distribution, COLOR.answered, "wait", true);
    chartHours(report);
    chartWeekdays(report);
    chartBuckets("talk", "chart-talk", report.talk_distribution, COLOR.talk, "talk time", false);
    chartStaffing(report.staffing || [], (r) => intervalLabel(r, report));
  }

  // ---- export ------------------------------------------------------------------------------

  function updateCsvLinks() {
    const query = queryParams(app.query);
    for (const link of document.querySelectorAll("a.csv[data-table]")) {
      if (link.dataset.table === "staffing" && app.query.plan) {
        link.href = `${PLAN_EXPORT}?${planParams(app.query)}`;
        link.setAttribute("download", `callbridge-staffing-plan-${app.query.plan}.csv`);
        continue;
      }
      const params = new URLSearchParams([["table", link.dataset.table], ...query]);
      link.href = `${EXPORT}?${params}`;
      link.setAttribute("download", `callbridge-${link.dataset.table}.csv`);
    }
  }

  const fileSafe = (s) => String(s).replace(/[^A-Za-z0-9_-]+/g, "_").slice(0, 40);

  function exportPng(name) {
    const chart = app.charts[name];
    if (!chart) return;
    const days = periodDays(app.report && app.report.period);
    const when = days ? (days.oneDay ? days.first.date : `${days.first.date}_${days.last.date}`) : "report";
    const link = el("a", {
      href: chart.toBase64Image("image/png", 1),
      download: `callbridge-${name}-${when}-${fileSafe(app.query.queue || "all-queues")}`
        + `${app.query.pbx ? `-${fileSafe(app.query.pbx)}` : ""}.png`,
      hidden: true,
    });
    document.body.append(link);
    link.click();
    link.remove();
  }

  // ---- pickers -----------------------------------------------------------------------------

  function showPickers() {
    const q = app.query;
    $("p-period").value = q.period;
    $("p-interval").value = q.interval;
    $("range").hidden = q.period !== "range";
    $("p-from").value = q.from;
    $("p-to").value = q.to;
    fillQueues(app.report ? app.report.queues : []);
    fillPbxes(app.report ? app.report.pbxes : []);
    showPlanPicker();
  }

  // The PBX picker: only with several PBXes (one PBX: the page as it always was).
  function fillPbxes(pbxes) {
    const ids = [...new Set([...(Array.isArray(pbxes) ? pbxes : []), app.query.pbx].filter(Boolean).map(String))];
    $("p-pbx-label").hidden = ids.length < 2;
    const select = $("p-pbx");
    const sig = JSON.stringify(ids);
    if (select.dataset.sig !== sig) {
      select.dataset.sig = sig;
      setChildren(select, [el("option", { value: "" }, "All PBXes"), ...ids.map((n) => el("option", { value: n }, n))]);
    }
    select.value = app.query.pbx;
  }

  // The queue picker: every queue the report knows, and the one asked for even if not.
  function fillQueues(queues) {
    const names = [...new Set([...(Array.isArray(queues) ? queues : []), app.query.queue].filter(Boolean).map(String))];
    const select = $("p-queue");
    const sig = JSON.stringify(names);
    if (select.dataset.sig !== sig) {
      select.dataset.sig = sig;
      setChildren(select, [el("option", { value: "" }, "All queues"), ...names.map((n) => el("option", { value: n }, n))]);
    }
    select.value = app.query.queue;
  }

  // When the range is first picked, it starts as the period on screen (the server's days,
  // never this machine's calendar).
  function seedRange() {
    const days = periodDays(app.report && app.report.period);
    if (!$("p-from").value && days) $("p-from").value = days.first.date;
    if (!$("p-to").value && days) $("p-to").value = days.last.date;
  }

  function onPickerChange(event) {
    const q = { ...app.query };
    q.period = $("p-period").value;
    q.queue = $("p-queue").value;
    q.pbx = $("p-pbx").value;
    q.interval = $("p-interval").value;
    if (event && event.target.id === "p-period" && q.period === "range") {
      seedRange();
      $("range").hidden = false;
      $("p-from").focus();
      return; // the dates first, then "Show"
    }
    if (event && (event.target.id === "p-from" || event.target.id === "p-to")) return;
    if (q.period === "range" && !readRange(q)) return;
    if (q.period !== "range") {
      q.from = "";
      q.to = "";
    }
    go(q);
  }

  function readRange(q) {
    const from = $("p-from").value;
    const to = $("p-to").value;
    if (!DATE_RE.test(from) || !DATE_RE.test(to)) {
      showStatus("error", "Pick both dates of the range.");
      return false;
    }
    if (from > to) {
      showStatus("error", "The range starts after it ends.");
      return false;
    }
    q.from = from;
    q.to = to;
    return true;
  }

  function go(q) {
    app.query = q;
    window.history.replaceState(null, "", `${window.location.pathname}?${pageParams(q)}`);
    showPickers();
    load();
  }

  // ---- loading -----------------------------------------------------------------------------

  function showStatus(state, text) {
    document.body.dataset.state = state;
    $("status").textContent = text || "";
    $("report").setAttribute("aria-busy", state === "loading" ? "true" : "false");
  }

  async function load() {
    const seq = ++app.seq;
    updateCsvLinks();
    showStatus("loading", "Loading…");
    let resp;
    let body;
    try {
      resp = await fetch(`${API}?${queryParams(app.query)}`, {
        credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" },
      });
      if (resp.status === 401) {
        window.Callbridge.goToLogin();
        return;
      }
      body = await resp.json().catch(() => null);
    } catch {
      if (seq === app.seq) showStatus("error", "The server cannot be reached. Try again in a moment.");
      return;
    }
    if (seq !== app.seq) return; // a newer request is on its way
    if (!resp.ok || !body || typeof body !== "object") {
      const why = body && typeof body.error === "string" ? body.error : `HTTP ${resp.status}`;
      showStatus("error", `The report could not be made: ${why}`);
      return;
    }
    render(body);
  }

  function render(report) {
    app.report = report;
    renderDefinitions(report.definitions);
    setChildren($("period-text"), [periodText(report.period)]);
    const p = report.period || {};
    const queue = p.queue !== null && p.queue !== undefined && p.queue !== "" ? `queue ${p.queue}` : "all queues";
    const pbx = p.pbx ? `PBX ${p.pbx}` : severalPbxes(report) ? "all PBXes" : "";
    setChildren($("period-sub"), [[pbx, queue, INTERVAL_WORDS[p.interval] || "", p.timezone || ""].filter(Boolean)
      .join(" · ")]);
    showPickers();
    renderHeadline(report);
    renderIntervalTable(report);
    renderStaffing(report);
    renderQueues(report);
    renderOperators(report);
    renderCharts(report);
    if (app.query.plan) loadPlan(); // the plan follows the queue, interval and period picked
    else app.plan = null;
    const offered = report.totals && report.totals.offered;
    showStatus("ready", offered === 0 ? "No calls in this period." : "");
    const title = [periodText(report.period), p.pbx ? `PBX ${p.pbx}` : null, p.queue || null,
      "Reports · Callbridge"].filter(Boolean);
    document.title = title.join(" · ");
  }

  // ---- start -------------------------------------------------------------------------------

  function start() {
    if (window.Chart) {
      window.Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
      window.Chart.defaults.font.size = 13;
      window.Chart.defaults.color = COLOR.ink;
    }
    $("signout").addEventListener("click", () => window.Callbridge.signOut());
    const pickers = $("pickers");
    pickers.addEventListener("change", onPickerChange);
    pickers.addEventListener("submit", (event) => {
      event.preventDefault();
      const q = { ...app.query, period: "range", queue: $("p-queue").value, pbx: $("p-pbx").value,
        interval: $("p-interval").value };
      if (readRange(q)) go(q);
    });
    $("plan-pick").addEventListener("change", onPlanChange);
    $("p-plan-apply").addEventListener("click", applyPlanDay);
    for (const button of document.querySelectorAll("button.png[data-chart]")) {
      button.addEventListener("click", () => exportPng(button.dataset.chart));
    }
    window.Callbridge.loadSession()
      .then((s) => window.Callbridge.showWhoami(s, el("span", { class: "who-ext" }, s.role || "")))
      .catch(() => {});
    showPickers();
    load();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
