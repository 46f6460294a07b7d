// The settings page (#/settings): "compose in plain text" (kept per user on
// the server, /webmail/settings), the identities (display name, reply-to,
// text and HTML signatures: Identity/set update) and the vacation responder
// (VacationResponse/set update of the singleton, RFC 8621 s8).

import { $, clear, el, formatAddresses, notice, parseAddresses, showError } from "./ui.js";
import { SUBMISSION, VACATION, checkSet } from "./jmap.js";
import { state } from "./state.js";
import { importHTML, makeEditor } from "./editor.js";

export async function loadSettings() {
  if (state.settings) return state.settings;
  try {
    const response = await fetch("/webmail/settings", { credentials: "same-origin" });
    state.settings = response.ok ? await response.json() : { plainText: false };
  } catch (e) {
    state.settings = { plainText: false };
  }
  return state.settings;
}

async function saveSettings(change) {
  const response = await fetch("/webmail/settings", { method: "PUT", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": state.jmap.csrf }, body: JSON.stringify(change) });
  if (!response.ok) {
    let error = {};
    try { error = await response.json(); } catch (e) { error = {}; }
    throw { type: (error.type || "").replace(/^urn:mailnet:/, ""), description: error.detail || response.statusText };
  }
  state.settings = await response.json();
}

function writingSection(settings) {
  const box = el("input", { type: "checkbox", id: "setting-plain-text", checked: Boolean(settings.plainText) });
  box.addEventListener("change", async () => {
    try { await saveSettings({ plainText: box.checked }); notice("Settings saved"); } catch (e) { box.checked = !box.checked; showError("Saving the settings", e); }
  });
  return el("section", { class: "settings-section", id: "settings-writing" }, el("h3", { text: "Writing" }),
    el("label", { class: "check" }, box, " Compose in plain text (no formatting; replies quote the text)"));
}

function identityForm(identity, accountId) {
  const id = identity.id;
  const name = el("input", { type: "text", class: "identity-name", value: identity.name || "", "aria-label": "Display name" });
  const replyTo = el("input", { type: "text", class: "identity-reply-to", value: formatAddresses(identity.replyTo), "aria-label": "Reply-To" });
  const textSignature = el("textarea", { class: "identity-text-signature", rows: "4", "aria-label": "Text signature" });
  textSignature.value = identity.textSignature || "";
  const html = makeEditor(importHTML(identity.htmlSignature || ""), () => {});
  html.area.id = "";
  html.area.classList.add("identity-html-signature");
  html.area.setAttribute("aria-label", "HTML signature");
  for (const node of html.box.querySelectorAll("[id]")) node.removeAttribute("id");
  const form = el("form", { class: "identity-form", dataset: { email: identity.email } },
    el("h4", { text: identity.email }),
    el("label", { class: "compose-field" }, el("span", { text: "Name" }), name),
    el("label", { class: "compose-field" }, el("span", { text: "Reply-To" }), replyTo),
    el("label", { class: "stacked" }, el("span", { text: "Signature (plain text)" }), textSignature),
    el("div", { class: "stacked" }, el("span", { text: "Signature (formatted)" }), html.box),
    el("div", { class: "compose-actions" }, el("button", { type: "submit", class: "primary save-identity", text: "Save identity" })));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!id) return showError("Saving the identity", { type: "forbidden", description: "this server has no identities to change" });
    const signatureHtml = html.area.textContent.trim() || html.area.querySelector("img") ? html.html() : "";
    const update = { name: name.value.trim(), replyTo: replyTo.value.trim() ? parseAddresses(replyTo.value) : null,
      textSignature: textSignature.value, htmlSignature: signatureHtml };
    try {
      checkSet(await state.jmap.call("Identity/set", { accountId, update: { [id]: update } }), "");
      Object.assign(identity, update);
      notice(`Identity ${identity.email} saved`);
    } catch (err) {
      showError("Saving the identity", err);
    }
  });
  return form;
}

async function identitiesSection() {
  const section = el("section", { class: "settings-section", id: "settings-identities" }, el("h3", { text: "Identities" }));
  const { jmap } = state;
  if (!jmap.has(SUBMISSION)) return section.append(el("p", { text: "This server does not send mail over JMAP." })), section;
  const accountId = jmap.session.primaryAccounts[SUBMISSION] || jmap.accountId;
  try {
    const answer = await jmap.request([["Identity/get", { accountId, ids: null }, "i"]]);
    state.identities = answer.i.list;
  } catch (e) {
    showError("Loading your identities", e);
    return section;
  }
  section.append(el("p", { class: "note", text: "The signature goes below new messages and replies (the formatted one when you write with formatting, else the text one)." }));
  for (const identity of state.identities) section.append(identityForm(identity, accountId));
  return section;
}

// "2026-12-24T09:00:00Z" <-> the local time of a datetime-local input.
function toLocalInput(utc) {
  if (!utc) return "";
  const d = new Date(utc);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
function fromLocalInput(value) {
  return value ? new Date(value).toISOString().replace(/\.\d{3}Z$/, "Z") : null;
}

async function vacationSection() {
  const section = el("section", { class: "settings-section", id: "settings-vacation" }, el("h3", { text: "Vacation responder" }));
  const { jmap } = state;
  if (!jmap.has(VACATION)) return section.append(el("p", { text: "This server has no vacation responder." })), section;
  const accountId = jmap.session.primaryAccounts[VACATION] || jmap.accountId;
  let v;
  try {
    v = (await jmap.request([["VacationResponse/get", { accountId, ids: ["singleton"] }, "v"]])).v.list[0] || {};
  } catch (e) {
    showError("Loading the vacation responder", e);
    return section;
  }
  const on = el("input", { type: "checkbox", id: "vacation-enabled", checked: Boolean(v.isEnabled) });
  const from = el("input", { type: "datetime-local", id: "vacation-from", value: toLocalInput(v.fromDate), "aria-label": "From" });
  const to = el("input", { type: "datetime-local", id: "vacation-to", value: toLocalInput(v.toDate), "aria-label": "Until" });
  const subject = el("input", { type: "text", id: "vacation-subject", value: v.subject || "", placeholder: "Auto: (the message's subject)", "aria-label": "Subject" });
  const text = el("textarea", { id: "vacation-text", rows: "5", "aria-label": "Reply text" });
  text.value = v.textBody || "";
  const form = el("form", { id: "vacation-form", class: "vacation-form" },
    el("label", { class: "check" }, on, " Answer mail automatically"),
    el("label", { class: "compose-field" }, el("span", { text: "From" }), from),
    el("label", { class: "compose-field" }, el("span", { text: "Until" }), to),
    el("label", { class: "compose-field" }, el("span", { text: "Subject" }), subject),
    el("label", { class: "stacked" }, el("span", { text: "Reply text" }), text),
    el("p", { class: "note", text: "Each sender gets one answer (RFC 3834 rules: no answer to lists or automatic mail). Dates are your local time; empty means no limit." }),
    el("div", { class: "compose-actions" }, el("button", { type: "submit", class: "primary", id: "vacation-save", text: "Save vacation responder" })));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const fromDate = fromLocalInput(from.value), toDate = fromLocalInput(to.value);
    if (fromDate && toDate && toDate <= fromDate) return showError("Saving the vacation responder", { type: "invalidProperties", description: "the end date is before the start date" });
    if (on.checked && !text.value.trim()) return showError("Saving the vacation responder", { type: "invalidProperties", description: "write the reply text" });
    const update = { isEnabled: on.checked, fromDate, toDate, subject: subject.value.trim() || null, textBody: text.value || null };
    try {
      checkSet(await jmap.call("VacationResponse/set", { accountId, update: { singleton: update } }), "");
      notice(on.checked ? "Vacation responder on" : "Vacation responder saved (off)");
    } catch (err) {
      showError("Saving the vacation responder", err);
    }
  });
  section.append(form);
  return section;
}

export async function openSettings() {
  const page = clear($("settings"));
  page.append(el("div", { class: "compose-head" }, el("h2", { text: "Settings" })));
  $("reader").hidden = true;
  $("compose").hidden = true;
  page.hidden = false;
  document.body.classList.add("composing");
  const settings = await loadSettings();
  page.append(writingSection(settings), await identitiesSection(), await vacationSection());
}

export function closeSettings() {
  const page = $("settings");
  if (page.hidden) return;
  page.hidden = true;
  $("reader").hidden = false;
  document.body.classList.remove("composing");
}
