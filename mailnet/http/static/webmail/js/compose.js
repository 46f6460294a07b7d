// Compose, reply, reply all, forward (inline and as attachment): identities,
// attachments uploaded as blobs with progress, autosave to Drafts (create the
// new draft and destroy the old one in one Email/set), send through
// EmailSubmission (Drafts -> Sent, no $draft) with an undo bar during the
// server's hold, $answered / $forwarded on the original.  Rich text (the
// default; "compose in plain text" is a setting) is written in editor.js,
// cleaned by the server (/webmail/compose-html, which also gives the
// text/plain alternative) and sent as multipart/alternative; the identity's
// signature goes into new messages and replies.

import { $, clear, el, formatAddresses, formatDate, formatSize, notice, parseAddresses, showError } from "./ui.js";
import { Jmap, SUBMISSION, checkSet } from "./jmap.js";
import { loadMailboxes, remember, roleId, state } from "./state.js";
import { loadEmail, fileName, htmlUrl } from "./reader.js";
import { refreshList } from "./list.js";
import { importHTML, makeEditor, textToNodes } from "./editor.js";
import { loadSettings } from "./settings.js";

const AUTOSAVE_MS = 2000;
let draft = null; // the compose in progress

export function composing() {
  return draft;
}

export async function identities() {
  if (state.identities) return state.identities;
  const { jmap } = state;
  if (jmap.has(SUBMISSION)) {
    try {
      const answer = await jmap.request([["Identity/get", { accountId: jmap.session.primaryAccounts[SUBMISSION] || jmap.accountId, ids: null }, "i"]]);
      state.identities = answer.i.list;
    } catch (e) {
      showError("Loading your identities", e);
    }
  }
  if (!state.identities || !state.identities.length) state.identities = [{ id: null, name: "", email: jmap.username }];
  return state.identities;
}

let recentLoaded = false;
async function loadRecent() {
  if (recentLoaded) return;
  recentLoaded = true;
  const sent = roleId("sent");
  if (!sent) return;
  try {
    const answer = await state.jmap.request([
      ["Email/query", { filter: { inMailbox: sent }, sort: [{ property: "receivedAt", isAscending: false }], limit: 100 }, "q"],
      ["Email/get", { "#ids": Jmap.ref("q", "Email/query", "/ids"), properties: ["to", "cc"] }, "g"]]);
    for (const e of answer.g.list.reverse()) { remember(e.cc); remember(e.to); }
  } catch (e) { /* autocomplete is a convenience: a failure here is not worth a notice */ }
}

function subjectWith(prefix, subject) {
  const s = (subject || "").trim();
  const re = prefix === "Re:" ? /^re:/i : /^(fwd?|fw):/i;
  return re.test(s) ? s : `${prefix} ${s}`.trim();
}

function originalText(email) {
  const parts = email.textBody || [];
  let text = parts.map((p) => (email.bodyValues && email.bodyValues[p.partId] ? email.bodyValues[p.partId].value : "")).join("\n");
  if (parts.some((p) => p.type === "text/html")) {
    // An HTML-only message: its text through an inert document (DOMParser runs nothing, loads nothing).
    text = new DOMParser().parseFromString(text, "text/html").body.textContent || "";
  }
  return text;
}

function mine(address) {
  const own = new Set((state.identities || []).map((i) => i.email.toLowerCase()).concat([state.jmap.username.toLowerCase()]));
  return own.has((address.email || "").toLowerCase());
}

// The fields of a new message answering or forwarding `original`.
function fromOriginal(mode, original) {
  const ids = (original.messageId || []);
  const references = (original.references || original.inReplyTo || []).concat(ids);
  const date = formatDate(original.sentAt || original.receivedAt, true);
  const text = originalText(original);
  if (mode === "reply" || mode === "replyall") {
    const to = (original.replyTo && original.replyTo.length ? original.replyTo : original.from) || [];
    let cc = [];
    let toAll = to.slice();
    if (mode === "replyall") {
      toAll = to.concat((original.to || []).filter((a) => !mine(a)));
      cc = (original.cc || []).filter((a) => !mine(a));
    }
    const seen = new Set();
    const unique = (list) => list.filter((a) => { const k = a.email.toLowerCase(); if (seen.has(k)) return false; seen.add(k); return true; });
    const quoted = text.replace(/\n$/, "").split("\n").map((l) => "> " + l).join("\n");
    return { to: unique(toAll), cc: unique(cc), subject: subjectWith("Re:", original.subject),
      body: `\n\nOn ${date}, ${formatAddresses(original.from)} wrote:\n${quoted}\n`,
      intro: [`On ${date}, ${formatAddresses(original.from)} wrote:`],
      inReplyTo: ids.length ? ids : null, references: references.length ? references : null,
      answers: { id: original.id, keyword: "$answered" }, attachments: [] };
  }
  const header = ["", "", "---------- Forwarded message ----------", `From: ${formatAddresses(original.from)}`,
    `Date: ${date}`, `Subject: ${original.subject || ""}`, `To: ${formatAddresses(original.to)}`];
  if (original.cc && original.cc.length) header.push(`Cc: ${formatAddresses(original.cc)}`);
  const attachments = mode === "attach"
    ? [{ blobId: original.blobId, type: "message/rfc822", name: fileName(original.subject, ".eml"), size: original.size }]
    : (original.attachments || []).map((a) => ({ blobId: a.blobId, type: a.type, name: a.name || "attachment", size: a.size }));
  return { to: [], cc: [], subject: subjectWith("Fwd:", original.subject),
    body: mode === "attach" ? "\n" : header.join("\n") + "\n\n" + text,
    intro: mode === "attach" ? null : header.slice(2),
    inReplyTo: null, references: references.length ? references : null,
    answers: { id: original.id, keyword: "$forwarded" }, attachments };
}

function metaKey(id) { return "webmail.draft." + id; }

// The original's HTML part, cleaned by the server, as allowed elements (null when it has none or it fails).
async function originalHTML(email) {
  const part = (email.htmlBody || []).find((p) => p.type === "text/html");
  if (!part) return null;
  try {
    const response = await fetch(htmlUrl(email, part, false), { credentials: "same-origin" });
    if (!response.ok) return null;
    return importHTML(await response.text());
  } catch (e) {
    return null;
  }
}

function signatureText(identity) {
  return identity && identity.textSignature ? `\n\n-- \n${identity.textSignature.replace(/\n$/, "")}\n` : "";
}

function signatureNodes(identity) {
  if (!identity || !(identity.htmlSignature || identity.textSignature)) return null;
  const box = el("div", { class: "signature" }, el("div", {}, "-- "));
  box.append(identity.htmlSignature ? importHTML(identity.htmlSignature) : textToNodes(identity.textSignature));
  return box;
}

// The editor's first content: a blank line, the signature, then the quote or the forwarded message.
async function richContent(mode, fields, identity, original) {
  const frag = document.createDocumentFragment();
  frag.append(el("div", {}, el("br")));
  if (mode !== "forward" && mode !== "attach") {
    const signature = signatureNodes(identity);
    if (signature) frag.append(signature);
  }
  if (original && fields.intro) {
    frag.append(el("div", {}, el("br")));
    for (const line of fields.intro) frag.append(el("div", {}, line));
    const html = await originalHTML(original);
    const body = html || textToNodes(originalText(original));
    if (mode === "reply" || mode === "replyall") frag.append(el("blockquote", { type: "cite" }, body));
    else frag.append(el("div", {}, el("br")), body);
  }
  return frag;
}

// Open the compose form: mode "new", "draft" (resume id), "reply", "replyall", "forward", "attach".
export async function openCompose(mode, id) {
  await flush();
  const ids = await identities();
  const settings = await loadSettings();
  loadRecent();
  let fields = { to: [], cc: [], bcc: [], subject: "", body: "", inReplyTo: null, references: null, answers: null, attachments: [] };
  let draftId = null, identityId = ids[0].id, fromEmail = ids[0].email;
  let rich = !settings.plainText, content = null, original = null;
  if (id) {
    try { original = await loadEmail(id); } catch (e) { return showError("Opening the message", e); }
    if (!original) return notice("That message is gone.");
    if (mode === "draft") {
      draftId = original.id;
      let meta = {};
      try { meta = JSON.parse(localStorage.getItem(metaKey(draftId)) || "{}"); } catch (e) { meta = {}; }
      fields = { to: original.to || [], cc: original.cc || [], bcc: original.bcc || [], subject: original.subject || "",
        body: originalText(original), inReplyTo: original.inReplyTo, references: original.references,
        answers: meta.answers || null,
        attachments: (original.attachments || []).map((a) => ({ blobId: a.blobId, type: a.type, name: a.name || "attachment", size: a.size })) };
      const from = (original.from || [])[0];
      const identity = from && ids.find((i) => i.email.toLowerCase() === from.email.toLowerCase());
      if (identity) { identityId = identity.id; fromEmail = identity.email; }
      // A draft keeps its kind: rich when it has an HTML alternative.
      rich = (original.htmlBody || []).some((p) => p.type === "text/html");
      if (rich) content = (await originalHTML(original)) || textToNodes(fields.body);
    } else {
      fields = Object.assign(fields, fromOriginal(mode, original));
    }
  }
  const identity = ids.find((i) => i.id === identityId) || ids[0];
  if (mode !== "draft") {
    if (rich) content = await richContent(mode, fields, identity, original);
    else if (mode === "new") fields.body = signatureText(identity);
    else if (mode === "reply" || mode === "replyall") fields.body = signatureText(identity).replace(/\n$/, "") + fields.body;
  }
  draft = { mode, draftId, identityId, fromEmail, fields, rich, content, editor: null, dirty: false, timer: null, saving: null, waiting: 0, savedText: "", uploads: [], sent: false };
  render();
  if (mode !== "draft" && mode !== "new") changed();
}

function field(label, id, value, type = "text") {
  const input = el("input", { id, type, value: value || "", autocomplete: "off", spellcheck: "false" });
  input.addEventListener("input", changed);
  return el("label", { class: "compose-field" }, el("span", { text: label }), input);
}

function addressField(label, id, list) {
  const wrap = field(label, id, formatAddresses(list));
  const input = wrap.querySelector("input");
  const menu = el("ul", { class: "suggestions", hidden: true, role: "listbox" });
  wrap.append(menu);
  const pick = (address) => {
    const parts = input.value.split(",");
    parts[parts.length - 1] = " " + address;
    input.value = parts.join(",").replace(/^\s+/, "") + ", ";
    menu.hidden = true;
    input.focus();
    changed();
  };
  input.addEventListener("input", () => {
    const token = input.value.split(",").pop().trim().toLowerCase();
    clear(menu);
    if (token.length < 1) { menu.hidden = true; return; }
    const found = [];
    for (const [email, name] of Array.from(state.recent.entries()).reverse()) {
      if (email.toLowerCase().includes(token) || (name && name.toLowerCase().includes(token))) found.push(name ? `${name} <${email}>` : email);
      if (found.length >= 8) break;
    }
    for (const text of found) menu.append(el("li", { role: "option", class: "suggestion", text, onmousedown: (e) => { e.preventDefault(); pick(text); } }));
    menu.hidden = !found.length;
  });
  input.addEventListener("keydown", (e) => {
    if (!menu.hidden && (e.key === "Tab" || e.key === "Enter") && menu.firstChild) { e.preventDefault(); pick(menu.firstChild.textContent); }
    if (e.key === "Escape") menu.hidden = true;
  });
  input.addEventListener("blur", () => setTimeout(() => { menu.hidden = true; }, 150));
  return wrap;
}

function attachmentRow(a) {
  const progress = el("progress", { max: "1", value: a.blobId ? "1" : "0", class: "upload-progress" });
  const row = el("li", { class: "compose-attachment", dataset: { name: a.name } },
    el("span", { class: "attachment-name", text: a.name }), el("span", { class: "attachment-size", text: " " + formatSize(a.size) + " " }),
    progress,
    el("button", { type: "button", class: "remove-attachment", "aria-label": "Remove " + a.name, text: "\u00d7",
      onclick: () => { draft.fields.attachments = draft.fields.attachments.filter((x) => x !== a); row.remove(); changed(); } }));
  a.progress = progress;
  return row;
}

function addFiles(files) {
  const list = $("compose-attachments");
  for (const file of files) {
    const a = { name: file.name, type: file.type || "application/octet-stream", size: file.size, blobId: null };
    draft.fields.attachments.push(a);
    list.append(attachmentRow(a));
    const upload = state.jmap.upload(file, (f) => { a.progress.value = f; })
      .then((answer) => { a.blobId = answer.blobId; a.type = answer.type || a.type; changed(); })
      .catch((e) => {
        draft.fields.attachments = draft.fields.attachments.filter((x) => x !== a);
        const row = list.querySelector(`li[data-name="${CSS.escape(a.name)}"]`);
        if (row) row.remove();
        showError(`Uploading ${a.name}`, e);
      });
    draft.uploads.push(upload);
  }
}

function render() {
  const box = clear($("compose"));
  const f = draft.fields;
  const from = el("select", { id: "compose-from", "aria-label": "From" },
    state.identities.map((i) => el("option", { value: i.id || "", selected: i.id === draft.identityId, text: i.name ? `${i.name} <${i.email}>` : i.email })));
  from.addEventListener("change", () => {
    const before = state.identities.find((x) => x.id === draft.identityId);
    const i = state.identities.find((x) => (x.id || "") === from.value);
    draft.identityId = i.id; draft.fromEmail = i.email;
    swapSignature(before, i);
    changed();
  });
  const picker = el("input", { type: "file", id: "compose-files", multiple: true, "aria-label": "Attach files" });
  picker.addEventListener("change", () => { addFiles(Array.from(picker.files)); picker.value = ""; });
  let text, bodyBox;
  if (draft.rich) {
    draft.editor = makeEditor(draft.content || textToNodes(f.body), changed);
    draft.content = null;
    text = draft.editor.area;
    bodyBox = draft.editor.box;
  } else {
    draft.editor = null;
    text = bodyBox = el("textarea", { id: "compose-body", rows: "16", "aria-label": "Message text" });
    text.value = f.body;
    text.addEventListener("input", changed);
  }
  const form = el("form", { id: "compose-form", class: "compose-form" },
    el("div", { class: "compose-head" }, el("h2", { text: draft.mode === "new" || draft.mode === "draft" ? "New message" : "" }),
      el("span", { id: "compose-status", class: "compose-status", "aria-live": "polite" })),
    el("label", { class: "compose-field" }, el("span", { text: "From" }), from),
    addressField("To", "compose-to", f.to), addressField("Cc", "compose-cc", f.cc), addressField("Bcc", "compose-bcc", f.bcc),
    field("Subject", "compose-subject", f.subject),
    bodyBox,
    el("div", { class: "dropzone", id: "dropzone" }, el("span", { text: "Drop files here or " }), picker),
    el("ul", { id: "compose-attachments", class: "compose-attachments" }, f.attachments.map(attachmentRow)),
    el("div", { class: "compose-actions" },
      el("button", { type: "submit", id: "send", class: "primary", text: "Send" }),
      el("button", { type: "button", id: "save-draft", text: "Save draft", onclick: () => saveDraft(true) }),
      el("button", { type: "button", id: "discard", text: "Discard", onclick: discard }),
      el("button", { type: "button", id: "switch-mode", class: "switch-mode", text: draft.rich ? "Plain text" : "Rich text",
        title: draft.rich ? "Write this message in plain text" : "Write this message with formatting", onclick: switchMode })));
  if (draft.mode !== "new" && draft.mode !== "draft") form.querySelector("h2").textContent = f.subject;
  form.addEventListener("submit", (e) => { e.preventDefault(); send(); });
  for (const type of ["dragenter", "dragover"]) box.addEventListener(type, (e) => { e.preventDefault(); box.classList.add("dragging"); });
  box.addEventListener("dragleave", () => box.classList.remove("dragging"));
  box.addEventListener("drop", (e) => {
    e.preventDefault();
    box.classList.remove("dragging");
    if (e.dataTransfer && e.dataTransfer.files.length) addFiles(Array.from(e.dataTransfer.files));
  });
  box.append(form);
  $("reader").hidden = true;
  box.hidden = false;
  document.body.classList.add("composing");
  (f.to.length ? text : form.querySelector("#compose-to")).focus();
  if (f.to.length && !draft.rich) text.setSelectionRange(0, 0);
}

// The From identity changed: its signature replaces the one of the identity before (when still there).
function swapSignature(before, after) {
  if (draft.rich && draft.editor) {
    const old = draft.editor.area.querySelector(".signature");
    const fresh = signatureNodes(after);
    if (old && fresh) old.replaceWith(fresh);
    else if (old) old.remove();
    else if (fresh && draft.mode !== "forward" && draft.mode !== "attach") draft.editor.area.insertBefore(fresh, draft.editor.area.children[1] || null);
    return;
  }
  const text = $("compose-body");
  const old = signatureText(before).replace(/\n$/, "");
  if (!text) return;
  if (old && text.value.includes(old)) text.value = text.value.replace(old, signatureText(after).replace(/\n$/, ""));
}

// This message in the other kind: rich -> the server's text of it; plain -> its lines.
async function switchMode() {
  readForm();
  if (draft.rich) {
    try {
      const cleaned = await cleanHTML(draft.fields.html);
      draft.fields.body = cleaned.text;
    } catch (e) { return showError("Switching to plain text", e); }
    draft.rich = false;
  } else {
    draft.content = textToNodes(draft.fields.body);
    draft.rich = true;
  }
  render();
  changed();
}

// The user's HTML cleaned by the server, with its text/plain alternative: {html, text}.
async function cleanHTML(html) {
  const response = await fetch("/webmail/compose-html", { method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": state.jmap.csrf }, body: JSON.stringify({ html }) });
  if (!response.ok) {
    let error = {};
    try { error = await response.json(); } catch (e) { error = {}; }
    throw { type: (error.type || "").replace(/^urn:mailnet:/, "") || String(response.status), description: error.detail || error.description || response.statusText };
  }
  return response.json();
}

const HTML_DOCUMENT = (body) => `<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head><body>${body}</body></html>\n`;

// The rich body cleaned (before an Email/set): fields.cleaned = {html, text}.
async function prepareBody(current) {
  if (current.rich) current.fields.cleaned = await cleanHTML(current.fields.html);
}

function changed() {
  if (!draft) return;
  draft.dirty = true;
  clearTimeout(draft.timer);
  draft.timer = setTimeout(() => saveDraft(false), AUTOSAVE_MS);
}

function readForm() {
  const f = draft.fields;
  f.to = parseAddresses($("compose-to").value);
  f.cc = parseAddresses($("compose-cc").value);
  f.bcc = parseAddresses($("compose-bcc").value);
  f.subject = $("compose-subject").value;
  if (draft.rich && draft.editor) f.html = draft.editor.html();
  else if ($("compose-body")) f.body = $("compose-body").value;
}

function emailObject(mailboxId, keywords) {
  const f = draft.fields;
  const identity = state.identities.find((i) => i.id === draft.identityId) || state.identities[0];
  const email = { mailboxIds: { [mailboxId]: true }, keywords,
    from: [identity.name ? { name: identity.name, email: identity.email } : { email: identity.email }],
    subject: f.subject,
    bodyValues: { body: { value: f.body } }, textBody: [{ partId: "body", type: "text/plain" }] };
  if (draft.rich && f.cleaned) {
    // RFC 2046 s5.1.4: multipart/alternative, the plainer text first (the server builds it from both).
    email.bodyValues = { text: { value: f.cleaned.text }, html: { value: HTML_DOCUMENT(f.cleaned.html) } };
    email.textBody = [{ partId: "text", type: "text/plain" }];
    email.htmlBody = [{ partId: "html", type: "text/html" }];
  }
  for (const key of ["to", "cc", "bcc"]) if (f[key].length) email[key] = f[key];
  if (identity.replyTo && identity.replyTo.length) email.replyTo = identity.replyTo;
  if (f.inReplyTo && f.inReplyTo.length) email.inReplyTo = f.inReplyTo;
  if (f.references && f.references.length) email.references = f.references;
  const ready = f.attachments.filter((a) => a.blobId);
  if (ready.length) email.attachments = ready.map((a) => ({ blobId: a.blobId, type: a.type, name: a.name, disposition: "attachment" }));
  return email;
}

function status(text) {
  const node = $("compose-status");
  if (node) node.textContent = text;
}

// Save the draft: create the new one, destroy the old, learn the new attachment blob ids.
export async function saveDraft(explicit) {
  if (!draft || draft.sent) return null;
  clearTimeout(draft.timer);
  if (explicit) status("Saving\u2026");
  let waited = false;
  if (draft.saving) {
    // One save at a time.  While this one waits, the one on its way must not say "Draft saved".
    const before = draft;
    before.waiting++;
    try { await before.saving; } finally { before.waiting--; }
    waited = true;
  }
  if (!draft || draft.sent) return null;
  // Nothing changed since the save just done read the form: it has everything ("Save draft"
  // clicked during an autosave does not write the same draft again).
  if (!draft.dirty && draft.draftId && (!explicit || waited)) {
    if (waited) status(draft.savedText);
    return draft.draftId;
  }
  status("Saving\u2026");
  const current = draft;
  current.saving = (async () => {
    if (document.getElementById("compose-form")) readForm();
    current.dirty = false;
    const drafts = roleId("drafts");
    try { await prepareBody(current); } catch (e) { current.dirty = true; status("Draft not saved"); showError("Saving the draft", e); return null; }
    const args = { create: { d: emailObject(drafts, { $draft: true, $seen: true }) } };
    if (current.draftId) args.destroy = [current.draftId];
    try {
      const answer = await state.jmap.request([["Email/set", args, "s"],
        ["Email/get", { ids: ["#d"], properties: ["id", "attachments"] }, "g"]], { allowErrors: true });
      if (answer.s.error) throw Object.assign(new Error(answer.s.description || answer.s.type), answer.s);
      checkSet(answer.s, "");
      const old = current.draftId;
      current.draftId = answer.s.created.d.id;
      if (old) localStorage.removeItem(metaKey(old));
      localStorage.setItem(metaKey(current.draftId), JSON.stringify({ answers: current.fields.answers }));
      const saved = answer.g.list && answer.g.list[0];
      const ready = current.fields.attachments.filter((a) => a.blobId);
      if (saved && saved.attachments && saved.attachments.length === ready.length) ready.forEach((a, i) => { a.blobId = saved.attachments[i].blobId; });
      if (draft === current && location.hash.startsWith("#/compose")) history.replaceState(null, "", `#/compose/${encodeURIComponent(current.draftId)}`);
      current.savedText = `Draft saved ${new Date().toLocaleTimeString()}`;
      if (!current.waiting) status(current.savedText);
      loadMailboxes();
      return current.draftId;
    } catch (e) {
      current.dirty = true;
      status("Draft not saved");
      showError("Saving the draft", e);
      return null;
    }
  })();
  try { return await current.saving; } finally { current.saving = null; }
}

// Save a changed draft before leaving the compose form, and let a save on its way end first
// (a list asked meanwhile could show the draft it replaces).
export async function flush() {
  if (draft && draft.saving) await draft.saving.catch(() => null);
  if (draft && draft.dirty && !draft.sent) await saveDraft(false);
}

export function closeCompose() {
  $("compose").hidden = true;
  $("reader").hidden = false;
  document.body.classList.remove("composing");
}

export async function leaveCompose() {
  await flush();
  if (draft) clearTimeout(draft.timer);
  draft = null;
  closeCompose();
}

async function discard() {
  const current = draft;
  clearTimeout(current.timer);
  current.sent = true;
  if (current.saving) await current.saving;
  if (current.draftId) {
    try { checkSet(await state.jmap.call("Email/set", { destroy: [current.draftId] }), "Discarding the draft"); localStorage.removeItem(metaKey(current.draftId)); } catch (e) { showError("Discarding the draft", e); }
  }
  draft = null;
  notice("Draft discarded");
  closeCompose();
  location.replace(state.lastListHash || "#/");
}

async function send() {
  const current = draft;
  readForm();
  const f = current.fields;
  if (!f.to.length && !f.cc.length && !f.bcc.length) return showError("Sending", { type: "noRecipients", description: "add at least one recipient" });
  if (!state.jmap.has(SUBMISSION)) return showError("Sending", { type: "unknownCapability", description: "this server cannot send mail over JMAP yet" });
  const button = $("send");
  button.disabled = true;
  status("Sending\u2026");
  clearTimeout(current.timer);
  try {
    await Promise.all(current.uploads);
    if (current.saving) await current.saving;
    await prepareBody(current);
    const drafts = roleId("drafts"), sent = roleId("sent");
    const emailArgs = { create: { d: emailObject(drafts, { $draft: true, $seen: true }) } };
    if (current.draftId) emailArgs.destroy = [current.draftId];
    const answer = await state.jmap.request([
      ["Email/set", emailArgs, "e"],
      ["EmailSubmission/set", { create: { s: { identityId: current.identityId, emailId: "#d" } },
        onSuccessUpdateEmail: { "#s": { mailboxIds: { [sent]: true }, "keywords/$draft": null, "keywords/$seen": true } } }, "s"],
    ], { allowErrors: true });
    if (answer.e.error) throw answer.e;
    checkSet(answer.e, "Saving the message");
    const oldDraft = current.draftId;
    current.draftId = answer.e.created.d.id;
    if (oldDraft) localStorage.removeItem(metaKey(oldDraft));
    if (answer.s.error) throw answer.s;
    checkSet(answer.s, "");
    current.sent = true;
    localStorage.removeItem(metaKey(current.draftId));
    const submission = answer.s.created.s;
    if (current.fields.answers) {
      state.jmap.call("Email/set", { update: { [current.fields.answers.id]: { ["keywords/" + current.fields.answers.keyword]: true } } })
        .then((a) => checkSet(a, "Marking the original")).catch((e) => showError("Marking the original", e));
    }
    draft = null;
    closeCompose();
    location.replace(state.lastListHash || "#/");
    sentNotice(submission, current);
    loadMailboxes().then(refreshList);
  } catch (e) {
    button.disabled = false;
    status("Not sent");
    showError("Sending", e.type ? e : { type: "", description: e.message });
  }
}

function sentNotice(submission, sentDraft) {
  if (submission.undoStatus !== "pending") return notice("Message sent");
  const bar = notice("Sending\u2026", { kind: "undo", timeout: 10000, action: { label: "Undo", run: () => undo(submission, sentDraft) } });
  bar.id = "undo-bar";
}

async function undo(submission, sentDraft) {
  try {
    const answer = await state.jmap.call("EmailSubmission/set", { update: { [submission.id]: { undoStatus: "canceled" } } });
    checkSet(answer, "");
    // Back to Drafts, and the form again.
    checkSet(await state.jmap.call("Email/set", { update: { [sentDraft.draftId]: { mailboxIds: { [roleId("drafts")]: true }, "keywords/$draft": true } } }), "");
    if (sentDraft.fields.answers) localStorage.setItem(metaKey(sentDraft.draftId), JSON.stringify({ answers: sentDraft.fields.answers }));
    notice("Sending undone: the message is back in Drafts");
    location.hash = `#/compose/${encodeURIComponent(sentDraft.draftId)}`;
  } catch (e) {
    showError("Undoing the send (it may be sent already)", e);
  }
}
