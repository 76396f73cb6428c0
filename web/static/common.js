// Callbridge pages' shared helpers: window.Callbridge. Loaded before each page's own script
// (console, wallboard, supervisor, review room, my reviews); no inline script, no eval, so
// the pages run under their strict Content-Security-Policy.
//
// Safety rules kept here once for every page:
// - every string from a caller, a CRM, a reviewer or the server is data: it reaches the page
//   through text nodes / textContent / setAttribute only (el, setChildren), never innerHTML;
// - a link only for an http(s) URL (safeHttpUrl, externalLink): "javascript:", "data:" stay text;
// - every POST carries the session's CSRF token, with one retry on a fresh token when the
//   server refuses it; a 401 sends the user to /login, which sends him back here afterwards.
"use strict";

(() => {
  const LOGIN_URL = "/login";
  const LOGOUT_URL = "/logout";
  const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 15000]; // reconnect delays, then the last
  const ACTIVITY_EVERY_MS = 60000; // "the person is here" over the socket, at most this often
  const CLOSE_TOO_MANY = 4008; // the server's cap on open pages closed this one (web/ws_tasks.py)

  const state = { session: null, csrf: null, sessionHandlers: [] };

  const $ = (id) => document.getElementById(id);

  // ---- DOM (text only) ----------------------------------------------------------------

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

  // replaceChildren() would turn a null into the text "null": drop the gaps first.
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

  // A link only for http(s) URLs: "javascript:", "data:" and friends stay plain text.
  function safeHttpUrl(raw) {
    if (typeof raw !== "string" || raw === "") return null;
    try {
      const url = new URL(raw, window.location.href);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch {
      return null;
    }
  }

  // A link opening in a new tab, or null (the caller then shows the text alone).
  function externalLink(url, text, cls) {
    const href = safeHttpUrl(url);
    if (!href) return null;
    return el("a", { class: cls, href, target: "_blank", rel: "noopener noreferrer" }, text);
  }

  // The top bar's "who is signed in": the name, then his extensions (or `detail`).
  function showWhoami(person, detail) {
    const exts = person.extensions || [];
    const sub = detail !== undefined ? detail : exts.length ? el("span", { class: "who-ext" }, `ext ${exts.join(", ")}`) : null;
    setChildren($("whoami"), [el("span", { class: "who-name" }, person.display_name || person.user || ""), sub]);
  }

  // A reviewer's comment on a recording (review room, my reviews): its time, the text, who
  // and when. The time is a button playing from there (`listen`), disabled without audio.
  function commentRow(c, listen) {
    const time = el("button", { type: "button", class: "c-time", title: "Listen from here" }, formatClock(c.at_seconds));
    if (listen) time.addEventListener("click", () => listen(c.at_seconds));
    else time.disabled = true;
    return el(
      "li",
      { class: "comment", "data-id": c.id },
      time,
      el("span", { class: "c-dash", "aria-hidden": "true" }, "—"),
      el("span", { class: "c-text" }, c.text),
      el("span", { class: "c-by" }, `${c.author}, ${formatWhen(c.created_at)}`),
    );
  }

  // ---- time ---------------------------------------------------------------------------

  const pad = (n) => String(n).padStart(2, "0");

  function hms(s, padMinutes) {
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${padMinutes ? pad(m) : m}:${pad(s % 60)}`;
  }

  // A running time, "4:05" ("1:02:03" past an hour); never negative, a non-number is 0.
  function formatDuration(seconds) {
    return hms(Math.max(0, Math.floor(Number(seconds) || 0)), false);
  }

  // A moment of a recording as reviewers write it: "01:42", "1:02:03", "−00:14" before it.
  function formatClock(seconds) {
    const sign = seconds < 0 ? "−" : "";
    return sign + hms(Math.floor(Math.abs(seconds) + 1e-6), true);
  }

  // One fixed, unambiguous shape ("2026-11-24 14:05"), local time; epoch seconds or ISO.
  function formatWhen(value) {
    const d = typeof value === "number" ? new Date(value * 1000) : new Date(value);
    if (Number.isNaN(d.getTime())) return String(value || "");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }

  // ---- session and HTTP ---------------------------------------------------------------

  // The login page sends the user back here afterwards (it accepts local paths only).
  function goToLogin() {
    const back = window.location.pathname + window.location.search + window.location.hash;
    window.location.assign(`${LOGIN_URL}?next=${encodeURIComponent(back)}`);
  }

  // The answer's JSON object; one saying only the status if it is not JSON (an HTML page).
  async function readBody(resp) {
    try {
      const body = await resp.json();
      return body && typeof body === "object" ? body : {};
    } catch {
      return { message: `HTTP ${resp.status}` };
    }
  }

  // The server's own message for a refusal (shown as text), else the status.
  function messageOf(status, body) {
    return body && typeof body.message === "string" && body.message ? body.message : `HTTP ${status}`;
  }

  // GET JSON; a refusal throws an Error carrying the server's message; 401 goes to /login.
  async function getJson(path) {
    const resp = await fetch(path, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } });
    if (resp.status === 401) {
      goToLogin();
      throw new Error("Please sign in.");
    }
    if (!resp.ok) throw new Error(messageOf(resp.status, await readBody(resp)));
    return resp.json();
  }

  // GET /api/session: who is signed in and the CSRF token; tells every onSession handler.
  async function loadSession() {
    const session = await getJson("/api/session");
    state.session = session;
    state.csrf = session.csrf_token || session.csrf || session.token || null;
    for (const handler of state.sessionHandlers) handler(session);
    return session;
  }

  function onSession(handler) {
    state.sessionHandlers.push(handler);
    if (state.session) handler(state.session);
  }

  // POST JSON with the CSRF header. Resolves to {ok, status, body} whatever the status (the
  // PBX's answer or the refusal can be shown as it came). A CSRF refusal (or a 403 that does
  // not say why) is retried once with a fresh token: the session may have been renewed in
  // another tab. A 401 goes to the login page.
  async function post(path, payload, retried = false) {
    if (!state.csrf) await loadSession();
    const resp = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": state.csrf || "" },
      body: JSON.stringify(payload),
    });
    const body = await readBody(resp);
    if (resp.status === 403 && !retried && (body.error === "csrf" || body.error === undefined)) {
      await loadSession();
      return post(path, payload, true);
    }
    if (resp.status === 401) goToLogin();
    return { ok: resp.ok, status: resp.status, body };
  }

  // POST JSON; resolves to the answer's body, or throws an Error with the server's message.
  async function postJson(path, payload) {
    const { ok, status, body } = await post(path, payload);
    if (!ok) throw new Error(messageOf(status, body));
    return body;
  }

  async function signOut() {
    try {
      await post(LOGOUT_URL, {});
    } finally {
      window.location.assign(LOGIN_URL);
    }
  }

  // ---- connection status and a WebSocket that reconnects ---------------------------------

  // The top bar's connection pill: body[data-conn] styles it, #conn-text says it.
  function showConnection(status, connectedText, detail) {
    document.body.dataset.conn = status;
    const text = { connecting: "connecting…", connected: connectedText, reconnecting: "reconnecting…", replaced: "open in another tab" }[status];
    $("conn-text").textContent = text || status;
    $("conn").title = detail || "";
  }

  // "Opened in another tab": the page stays closed (reconnecting would push the other tab
  // out, and round and round) and says so, with a button to take over here.
  function showReplaced(takeOver) {
    let box = $("replaced");
    if (!box) {
      const button = el("button", { type: "button", class: "btn btn-primary replaced-take" }, "Use it here");
      box = el(
        "div",
        { id: "replaced", class: "replaced", role: "alert" },
        el("strong", {}, "This page is open in another tab or window. "),
        el("span", {}, "It stopped updating here, so that one keeps working. "),
        button,
      );
      document.body.prepend(box);
    }
    box.hidden = false;
    const button = box.querySelector("button");
    button.onclick = () => {
      box.hidden = true;
      takeOver();
    };
  }

  // A WebSocket to `path` that reconnects with backoff. Before each try the session is read
  // again: that renews the CSRF token and sends an ended session to the login page rather
  // than round and round. The page calls connected() once a frame of its own arrived.
  // A typing or clicking user is told to the server over the socket ({"type": "activity"},
  // at most once a minute): it keeps his session from its idle timeout, which an open
  // socket alone does not. Closed for too many pages (4008), it does not reconnect.
  function liveSocket(path, { onMessage, connectedText }) {
    const sock = { ws: null, attempt: 0, everConnected: false, lastActivity: 0, replaced: false };

    function connect() {
      const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
      const ws = new WebSocket(`${scheme}//${window.location.host}${path}`);
      sock.ws = ws;
      ws.addEventListener("message", (event) => onMessage(event.data));
      ws.addEventListener("close", (event) => {
        if (sock.ws !== ws) return;
        if (event.code === CLOSE_TOO_MANY) {
          sock.ws = null;
          sock.replaced = true;
          showConnection("replaced", connectedText, "open in another tab");
          showReplaced(() => {
            sock.replaced = false;
            sock.attempt = 0;
            showConnection("connecting", connectedText);
            reconnect();
          });
          return;
        }
        scheduleReconnect();
      });
      // An error is always followed by close; nothing more to do here.
    }

    function noteActivity() {
      const now = Date.now();
      const ws = sock.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN || now - sock.lastActivity < ACTIVITY_EVERY_MS) return;
      sock.lastActivity = now;
      ws.send(JSON.stringify({ type: "activity" }));
    }
    for (const kind of ["pointerdown", "keydown", "wheel", "touchstart"]) {
      document.addEventListener(kind, noteActivity, { capture: true, passive: true });
    }

    function scheduleReconnect() {
      sock.ws = null;
      const base = BACKOFF_MS[Math.min(sock.attempt, BACKOFF_MS.length - 1)];
      sock.attempt += 1;
      // A little jitter so a whole call centre does not reconnect in the same instant.
      const delay = base + Math.floor(Math.random() * base * 0.2);
      showConnection(sock.everConnected ? "reconnecting" : "connecting", connectedText, `next try in ${Math.round(delay / 1000)} s`);
      window.setTimeout(reconnect, delay);
    }

    async function reconnect() {
      if (sock.replaced) return;
      try {
        await loadSession();
      } catch {
        if (!sock.ws) scheduleReconnect();
        return;
      }
      connect();
    }

    return {
      start() {
        showConnection("connecting", connectedText);
        reconnect();
      },
      connected() {
        sock.attempt = 0;
        sock.everConnected = true;
        showConnection("connected", connectedText);
      },
    };
  }

  window.Callbridge = Object.freeze({
    $,
    el,
    setChildren,
    update,
    safeHttpUrl,
    externalLink,
    showWhoami,
    commentRow,
    formatDuration,
    formatClock,
    formatWhen,
    goToLogin,
    getJson,
    loadSession,
    onSession,
    session: () => state.session,
    post,
    postJson,
    signOut,
    showConnection,
    liveSocket,
  });
})();
