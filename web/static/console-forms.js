// Callbridge operator console: the interactive parts of a card (window.ConsoleForms), kept
// across card updates so a frame arriving mid-typing never eats the operator's text:
// the note box (debounced autosave + explicit save), the "create contact" form for an
// unknown caller, and the button pausing the recording while the caller dictates details.
// Each takes the card's view ({card, root, note, contact, pause}) from console.js.
//
// Same safety rule as console.js: every string from a caller, a CRM or the server is text.
"use strict";

(() => {
  const { el, postJson } = window.Callbridge;
  const AUTOSAVE_MS = 1000; // debounce: save a note one second after the last keystroke

  // ---- note box: debounced autosave + explicit save ----------------------------------

  function createNoteBox(view) {
    const note = { saved: view.card.note || "", timer: null, inFlight: null, dirty: false };
    note.textarea = el("textarea", {
      class: "note-text",
      rows: 3,
      maxlength: 4000,
      placeholder: "Note for this call: saved as you type",
      "aria-label": "Note for this call",
    });
    note.textarea.value = note.saved;
    note.button = el("button", { type: "button", class: "btn note-save" }, "Save note");
    note.status = el("span", { class: "note-status", role: "status" });
    note.bar = el("div", { class: "note-bar" }, note.button, note.status);
    note.root = el("div", { class: "note", hidden: true }, el("h3", {}, "Note"), note.textarea, note.bar);

    note.textarea.addEventListener("input", () => {
      note.dirty = note.textarea.value !== note.saved;
      setNoteStatus(note, note.dirty ? "unsaved" : "saved");
      window.clearTimeout(note.timer);
      note.timer = window.setTimeout(() => saveNote(view), AUTOSAVE_MS);
    });
    note.button.addEventListener("click", () => saveNote(view));
    return note;
  }

  function setNoteStatus(note, status) {
    const text = { unsaved: "Unsaved changes", saving: "Saving…", saved: "Saved", failed: "Not saved: retry" }[status];
    note.status.textContent = note.saved === "" && status === "saved" ? "" : text || "";
    note.status.dataset.status = status;
  }

  // Saves the textarea if it differs from the last saved text. Saves never overlap: one
  // started while another runs waits for it, then sends the newest text.
  async function saveNote(view) {
    const note = view.note;
    window.clearTimeout(note.timer);
    if (note.inFlight) await note.inFlight.catch(() => {});
    const text = note.textarea.value;
    if (text === note.saved) {
      note.dirty = false;
      if (note.status.dataset.status !== "failed") setNoteStatus(note, "saved");
      return true;
    }
    setNoteStatus(note, "saving");
    note.inFlight = postJson("/api/notes", { call_id: view.card.call_id, text });
    try {
      await note.inFlight;
      note.saved = text;
      note.dirty = note.textarea.value !== text;
      setNoteStatus(note, note.dirty ? "unsaved" : "saved");
      return true;
    } catch {
      setNoteStatus(note, "failed");
      return false;
    } finally {
      note.inFlight = null;
    }
  }

  function updateNoteBox(view) {
    const note = view.note;
    const { state } = view.card;
    note.root.hidden = !(state === "live" || state === "after_call");
    // Take the server's text only while the operator is not editing it here.
    const serverNote = view.card.note || "";
    if (!note.dirty && document.activeElement !== note.textarea && serverNote !== note.textarea.value) {
      note.textarea.value = serverNote;
      note.saved = serverNote;
    }
  }

  // ---- "create contact" for an unknown caller -----------------------------------------

  function createContactForm(view) {
    const form = {};
    form.name = el("input", { type: "text", name: "name", required: true, maxlength: 200, autocomplete: "off" });
    form.company = el("input", { type: "text", name: "company", maxlength: 200, autocomplete: "off" });
    form.button = el("button", { type: "submit", class: "btn" }, "Create contact");
    form.status = el("span", { class: "contact-status", role: "status" });
    form.root = el(
      "form",
      { class: "new-contact", hidden: true },
      el("span", { class: "new-contact-title" }, "Unknown caller: create a contact"),
      el("label", {}, "Name", form.name),
      el("label", {}, "Company", form.company),
      el("div", { class: "new-contact-bar" }, form.button, form.status),
    );
    form.root.addEventListener("submit", (event) => {
      event.preventDefault();
      createContact(view);
    });
    return form;
  }

  function updateContactForm(view) {
    const { card, contact } = view;
    const unknown = card.caller && card.caller.lookup === "not_found";
    contact.root.hidden = !(unknown && (card.state === "live" || card.state === "after_call"));
    // Offer the caller-id name as a start, once, if the operator has typed nothing yet.
    if (!contact.name.value && card.caller && card.caller.name && document.activeElement !== contact.name) {
      contact.name.value = card.caller.name;
    }
  }

  async function createContact(view) {
    const { contact } = view;
    const name = contact.name.value.trim();
    if (!name) {
      contact.status.textContent = "A name is needed";
      return;
    }
    contact.button.disabled = true;
    contact.status.textContent = "Creating…";
    try {
      const company = contact.company.value.trim() || null;
      await postJson("/api/contacts", { call_id: view.card.call_id, name, company });
      contact.status.textContent = "Contact created";
    } catch (err) {
      contact.status.textContent = `Not created: ${err.message}`;
    } finally {
      contact.button.disabled = false;
    }
  }

  // ---- pause the recording while the caller dictates card details ------------------------

  function createPauseControl(view) {
    const pause = { paused: false };
    pause.button = el("button", { type: "button", class: "btn pause-recording" }, "Pause recording");
    pause.status = el("span", { class: "pause-status", role: "status" });
    pause.root = el("div", { class: "pause-bar", hidden: true }, pause.button, pause.status);
    pause.button.addEventListener("click", () => togglePause(view));
    return pause;
  }

  async function togglePause(view) {
    const { pause } = view;
    const verb = pause.paused ? "resume" : "pause";
    pause.button.disabled = true;
    pause.status.textContent = "";
    try {
      const path = `/api/calls/${encodeURIComponent(view.card.call_id)}/recording/${verb}`;
      const reply = await postJson(path, {});
      pause.paused = Boolean(reply.paused);
      pause.button.textContent = pause.paused ? "Resume recording" : "Pause recording";
      pause.status.textContent = pause.paused ? "Recording paused: the caller's details are not recorded" : "";
      view.root.classList.toggle("recording-paused", pause.paused);
    } catch (err) {
      pause.status.textContent = `Could not ${verb} the recording: ${err.message}`;
    } finally {
      pause.button.disabled = false;
    }
  }


  window.ConsoleForms = Object.freeze({ createNoteBox, saveNote, updateNoteBox, createContactForm, updateContactForm, createPauseControl });
})();
