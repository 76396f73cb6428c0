// Callbridge "my reviews": an operator's own reviewed calls, their QA score cards and the
// reviewers' comments, with his recordings to listen to again.
//
// Contract: recordings/http.py. GET /api/reviews/mine -> {reviews: [{recording, scores,
// comments}], summary: [{operator, cards, total, max_total, percent, by_criterion}]} for
// the user's own extensions only (the server decides; this page never asks for another's).
// GET /api/reviews/criteria gives each criterion's maximum for the summary bars. The DOM,
// time and session helpers are window.Callbridge (common.js, loaded first).
//
// Safety rule for this file: comments, caller names and criterion names are data. They
// reach the page only through textContent / text nodes / setAttribute, never innerHTML.
"use strict";

(() => {
  const app = { me: null, maxPoints: new Map() };
  const { $, el, setChildren, formatClock, formatWhen, getJson } = window.Callbridge;

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
      : el("p", { class: "no-audio" }, rec.audio_note || "No audio to play.");
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
    const listen = audio.tagName === "AUDIO"
      ? (at) => {
        audio.currentTime = at;
        audio.play().catch(() => {});
      }
      : null;
    const rows = [...comments]
      .sort((a, b) => a.at_seconds - b.at_seconds)
      .map((c) => window.Callbridge.commentRow(c, listen));
    return el("ol", { class: "comment-list" }, ...rows);
  }

  // ---- start ------------------------------------------------------------------------

  async function start() {
    $("signout").addEventListener("click", window.Callbridge.signOut);
    try {
      app.me = await window.Callbridge.loadSession();
      window.Callbridge.showWhoami(app.me);
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
