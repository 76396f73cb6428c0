// Callbridge "my reviews": an operator's own reviewed calls, their QA score cards and the
// reviewers' comments, with his recordings to listen to again.
//
// Contract: recordings/http.py. GET /api/reviews/mine -> {reviews: [{recording, scores,
// comments}], summary: [{operator, cards, total, max_total, percent, by_criterion}]} for
// the user's own extensions only (the server decides; this page never asks for another's).
// GET /api/reviews/criteria gives each criterion's maximum for the summary bars.
//
// Safety rule for this file: comments, caller names and criterion names are data. They
// reach the page only through textContent / text nodes / setAttribute, never innerHTML.
"use strict";

(() => {
  const LOGIN_URL = "/login";

  const app = { csrf: null, me: null, maxPoints: new Map() };
  const $ = (id) => document.getElementById(id);

  // ---- small DOM helpers (text only) ----------------------------------------------

  // el("p", {class: "x", "data-y": v}, child, "text", ...): strings become text nodes.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child); // append(string) inserts a Text node, never markup
    }
    return node;
  }

  function setChildren(node, children) {
    node.replaceChildren(...children.filter((c) => c !== null && c !== undefined && c !== false));
  }

  // "01:42", as the reviewers write it; "1:02:03" past an hour.
  function formatClock(seconds) {
    const s = Math.max(0, Math.floor(seconds + 1e-6));
    const pad = (n) => String(n).padStart(2, "0");
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${pad(m)}:${pad(s % 60)}`;
  }

  function formatWhen(value) {
    const d = typeof value === "number" ? new Date(value * 1000) : new Date(value);
    if (Number.isNaN(d.getTime())) return String(value || "");
    const pad = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }

  // ---- HTTP -----------------------------------------------------------------------

  function goToLogin() {
    window.location.assign(`${LOGIN_URL}?next=${encodeURIComponent(window.location.pathname)}`);
  }

  async function getJson(path) {
    const resp = await fetch(path, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } });
    if (resp.status === 401) {
      goToLogin();
      throw new Error("Please sign in.");
    }
    if (!resp.ok) {
      let message = `HTTP ${resp.status}`;
      try {
        message = (await resp.json()).message || message;
      } catch {
        // not JSON: keep the status
      }
      throw new Error(message);
    }
    return resp.json();
  }

  // Sign-out is the only POST here: it needs the session's CSRF token.
  async function signOut() {
    try {
      await fetch("/logout", {
        method: "POST",
        credentials: "same-origin",
        headers: { Accept: "application/json", "X-CSRF-Token": app.csrf || "" },
      });
    } finally {
      window.location.assign(LOGIN_URL);
    }
  }

  // ---- summary ----------------------------------------------------------------------

  // One block per extension of the user: the overall percentage, then each criterion's
  // average against its maximum (the bar shows where he loses points).
  function renderSummary(summaries) {
    const scored = summaries.filter((s) => s.cards > 0);
    if (!scored.length) {
      setChildren($("summary"), [el("p", { class: "muted" }, "No score cards yet.")]);
      return;
    }
    setChildren($("summary"), scored.map(renderSummaryBlock));
  }

  function renderSummaryBlock(s) {
    const rows = Object.entries(s.by_criterion).map(([name, avg]) => {
      const max = app.maxPoints.get(name);
      const fill = el("span", { class: "bar-fill" });
      if (max) fill.style.width = `${Math.min(100, (100 * avg) / max)}%`; // CSSOM: allowed by the CSP
      return el(
        "li",
        {},
        el("span", { class: "bc-name" }, name),
        el("span", { class: "bar", "aria-hidden": "true" }, fill),
        el("span", { class: "bc-value" }, max ? `${avg} / ${max}` : String(avg)),
      );
    });
    const calls = `${s.cards} score card${s.cards === 1 ? "" : "s"}`;
    return el(
      "div",
      { class: "summary", "data-operator": s.operator },
      el(
        "div",
        { class: "summary-figure" },
        el("span", { class: "big-percent" }, `${s.percent} %`),
        el("span", { class: "summary-sub" }, `${calls} · ${s.total} of ${s.max_total} points · ext ${s.operator}`),
      ),
      el("ul", { class: "by-criterion", "aria-label": "Average points per criterion" }, ...rows),
    );
  }

  // ---- reviewed calls ---------------------------------------------------------------

  function renderReviews(reviews) {
    $("status").textContent = reviews.length
      ? `${reviews.length} reviewed call${reviews.length === 1 ? "" : "s"}`
      : "None of your calls has been reviewed yet.";
    setChildren($("reviews"), reviews.map(renderReview));
  }

  function renderReview(review) {
    const rec = review.recording;
    const caller = rec.caller_name || rec.caller_number || "Unknown caller";
    const facts = [
      formatWhen(rec.started_at),
      rec.queue ? `Queue ${rec.queue}` : null,
      rec.operator ? `ext ${rec.operator}` : null,
      rec.duration_seconds != null ? formatClock(rec.duration_seconds) : null,
    ].filter(Boolean);
    const audio = rec.audio_url
      ? el("audio", { class: "review-audio", controls: true, preload: "none", src: rec.audio_url })
      : el("p", { class: "no-audio" }, `No audio to play: the recording is ${rec.status}.`);
    const paused = (rec.paused || []).map((p) => `${formatClock(p.start)}–${p.end == null ? "…" : formatClock(p.end)}`);
    return el(
      "article",
      { class: "box review", "data-id": rec.id },
      el(
        "div",
        { class: "review-head" },
        el("h2", { class: "caller-name" }, caller),
        rec.caller_name && rec.caller_number ? el("span", { class: "number" }, rec.caller_number) : null,
        el("span", { class: "review-facts" }, facts.join(" · ")),
      ),
      audio,
      paused.length ? el("p", { class: "muted paused-note" }, `Recording paused (card data): ${paused.join(", ")}`) : null,
      el(
        "div",
        { class: "review-cols" },
        el("section", { class: "scores" }, el("h3", {}, "Score"), ...renderScores(review.scores || [])),
        el("section", { class: "comments" }, el("h3", {}, "Comments"), renderComments(review.comments || [], audio)),
      ),
    );
  }

  function renderScores(cards) {
    if (!cards.length) return [el("p", { class: "muted" }, "Not scored: comments only.")];
    return cards.map((card) => {
      const rows = card.criteria.map((c) =>
        el(
          "tr",
          { class: "criterion" },
          el("th", { scope: "row" }, c.name),
          el("td", {}, `${card.scores[c.name] ?? "—"} / ${c.max_points}`),
        ),
      );
      return el(
        "div",
        { class: "score-block", "data-reviewer": card.reviewer },
        el(
          "div",
          { class: "score-title" },
          el("span", { class: "score-total" }, `${card.total} / ${card.max_total}`),
          el("span", { class: "badge" }, `${card.percent} %`),
          el("span", { class: "score-by" }, `by ${card.reviewer}, ${formatWhen(card.updated_at)}`),
        ),
        el("table", { class: "criteria" }, el("tbody", {}, ...rows)),
        card.comment ? el("p", { class: "score-note-text" }, card.comment) : null,
      );
    });
  }

  // A comment's time plays his recording from that moment.
  function renderComments(comments, audio) {
    if (!comments.length) return el("p", { class: "muted" }, "No comments.");
    const rows = [...comments]
      .sort((a, b) => a.at_seconds - b.at_seconds)
      .map((c) => {
        const time = el("button", { type: "button", class: "c-time", title: "Listen from here" }, formatClock(c.at_seconds));
        if (audio.tagName === "AUDIO") {
          time.addEventListener("click", () => {
            audio.currentTime = c.at_seconds;
            audio.play().catch(() => {});
          });
        } else {
          time.disabled = true;
        }
        return el(
          "li",
          { class: "comment", "data-id": c.id },
          time,
          el("span", { class: "c-dash", "aria-hidden": "true" }, "—"),
          el("span", { class: "c-text" }, c.text),
          el("span", { class: "c-by" }, `${c.author}, ${formatWhen(c.created_at)}`),
        );
      });
    return el("ol", { class: "comment-list" }, ...rows);
  }

  // ---- start ------------------------------------------------------------------------

  async function start() {
    $("signout").addEventListener("click", signOut);
    try {
      app.me = await getJson("/api/session");
      app.csrf = app.me.csrf_token || null;
      setChildren($("whoami"), [
        el("span", { class: "who-name" }, app.me.display_name || app.me.user || ""),
        (app.me.extensions || []).length ? el("span", { class: "who-ext" }, `ext ${app.me.extensions.join(", ")}`) : null,
      ]);
      const [mine, criteria] = await Promise.all([getJson("/api/reviews/mine"), getJson("/api/reviews/criteria")]);
      for (const c of criteria.criteria || []) app.maxPoints.set(c.name, c.max_points);
      // A criterion since renamed or dropped keeps its maximum from the cards it was scored on.
      for (const r of mine.reviews || []) {
        for (const card of r.scores || []) for (const c of card.criteria) if (!app.maxPoints.has(c.name)) app.maxPoints.set(c.name, c.max_points);
      }
      renderSummary(mine.summary || []);
      renderReviews(mine.reviews || []);
    } catch (err) {
      $("status").textContent = `Could not load your reviews: ${err.message}`;
      $("status").dataset.failed = "1";
    }
  }

  start();
})();
