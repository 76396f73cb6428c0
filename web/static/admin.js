// Callbridge user administration (admins only): add users, change name, role and
// extensions (and their PBX, when several are configured), disable / enable, reset a password. JSON API: /api/admin/users (web/admin_http.py);
// every answer, a refusal included, shows in the status line as the server said it.
// Every string from the server is text (textContent), never markup.
"use strict";

(() => {
  const { $, el, setChildren, getJson, post, loadSession, onSession, showWhoami, signOut } = window.Callbridge;
  let roles = ["operator", "supervisor", "trainer", "admin"];
  let pbxes = []; // the configured PBXes, the main one first: a PBX field only when several
  let me = null;
  const severalPbxes = () => pbxes.length > 1;

  function say(state, text) {
    const box = $("answer");
    box.dataset.state = state;
    box.textContent = text;
  }

  const extensionsOf = (text) => text.split(/[\s,;]+/).map((e) => e.trim()).filter(Boolean);

  // One change; the answer (or the refusal) is shown; the list is read again.
  async function send(button, what, path, payload) {
    if (button) button.disabled = true;
    say("pending", `${what}…`);
    try {
      const { ok, status, body } = await post(path, payload);
      if (ok) say("ok", `${what}: done.`);
      else say("error", `${what}: ${(body && body.message) || `refused (HTTP ${status})`}`);
      await load();
      return ok;
    } catch (err) {
      say("error", `${what}: not sent (${err.message || err})`);
      return false;
    } finally {
      if (button) button.disabled = false;
    }
  }

  function choice(values, value, label) {
    return el("select", { "aria-label": label }, ...values.map((v) => {
      const option = el("option", { value: v }, v);
      option.selected = v === value;
      return option;
    }));
  }

  // The PBX goes with the extensions only where there is a choice (one PBX: the server's default).
  const withPbx = (payload, select) => (severalPbxes() ? { ...payload, pbx: select.value } : payload);

  function userRow(u) {
    const path = `/api/admin/users/${encodeURIComponent(u.username)}`;
    const name = el("input", { type: "text", maxlength: 128, value: u.display_name,
      "aria-label": `Name of ${u.username}` });
    const role = choice(roles, u.role, `Role of ${u.username}`);
    const pbx = choice(pbxes, u.pbx, `PBX of ${u.username}`);
    const exts = el("input", { type: "text", maxlength: 80, value: u.extensions.join(", "), inputmode: "numeric",
      "aria-label": `Extensions of ${u.username}` });
    const save = el("button", { type: "button", class: "act" }, "Save");
    save.addEventListener("click", () => send(save, `Save ${u.username}`, path,
      withPbx({ display_name: name.value.trim(), role: role.value, extensions: extensionsOf(exts.value) }, pbx)));
    const self = me && me.user === u.username;
    const toggle = el("button", { type: "button", class: `act ${u.active ? "danger" : ""}`, disabled: self,
      title: self ? "You cannot disable yourself" : "" }, u.active ? "Disable" : "Enable");
    toggle.addEventListener("click", () => send(toggle, `${u.active ? "Disable" : "Enable"} ${u.username}`, path,
      { active: !u.active }));
    const password = el("input", { type: "password", maxlength: 1024, autocomplete: "new-password",
      placeholder: "new password", "aria-label": `New password for ${u.username}` });
    const reset = el("button", { type: "button", class: "act" }, "Set");
    reset.addEventListener("click", async () => {
      if (await send(reset, `New password for ${u.username}`, `${path}/password`, { password: password.value })) {
        password.value = "";
      }
    });
    return el("tr", { "data-user": u.username, "data-active": u.active ? "yes" : "no" },
      el("td", { class: "username" }, u.username),
      el("td", { "data-label": "Name" }, name),
      el("td", { "data-label": "Role" }, role),
      el("td", { "data-label": "PBX", class: "pbx-cell", hidden: !severalPbxes() }, pbx),
      el("td", { "data-label": "Extensions" }, exts),
      el("td", { class: "state-cell" }, el("span", { class: "state" }, u.active ? "active" : "disabled")),
      el("td", { "data-label": "Change" }, el("div", { class: "cell-actions" }, save, toggle)),
      el("td", { "data-label": "Reset password" }, el("div", { class: "cell-actions" }, password, reset)));
  }

  async function load() {
    const data = await getJson("/api/admin/users");
    roles = data.roles || roles;
    pbxes = data.pbxes || [];
    const select = $("new-role");
    if (!select.options.length) setChildren(select, roles.map((r) => el("option", { value: r }, r)));
    const pbxSelect = $("new-pbx");
    if (!pbxSelect.options.length) setChildren(pbxSelect, pbxes.map((p) => el("option", { value: p }, p)));
    $("new-pbx-label").hidden = !severalPbxes();
    $("pbx-head").hidden = !severalPbxes();
    const users = data.users || [];
    setChildren($("users-body"), users.map(userRow));
    $("users-empty").hidden = users.length > 0;
  }

  $("add-user").addEventListener("submit", async (event) => {
    event.preventDefault();
    const username = $("new-username").value.trim();
    const ok = await send(event.submitter, `Add ${username}`, "/api/admin/users", withPbx({
      username,
      display_name: $("new-name").value.trim() || null,
      role: $("new-role").value,
      extensions: extensionsOf($("new-extensions").value),
      password: $("new-password").value,
    }, $("new-pbx")));
    if (ok) $("add-user").reset();
  });

  function start() {
    $("signout").addEventListener("click", signOut);
    onSession((session) => {
      me = session;
      showWhoami(session);
    });
    loadSession().then(load).catch((err) => say("error", err.message || String(err)));
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
