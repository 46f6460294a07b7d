// The reader: headers, the plain-text body as text, the HTML body in a
// sandboxed iframe served cleaned by /webmail/html/..., the "show remote
// images" bar, attachments, save as .eml; marks the message read on open.

import { $, clear, el, formatAddresses, formatDate, formatSize, linkify, notice, shortAddresses, showError } from "./ui.js";
import { Jmap } from "./jmap.js";
import { rowHref } from "./list.js";
import { mailboxOf, remember, roleId, state } from "./state.js";
import { archive, remove, setKeyword, toggleKeyword } from "./actions.js";
import { mailboxLabel } from "./folders.js";

export const READER_PROPERTIES = ["id", "blobId", "threadId", "mailboxIds", "keywords", "from", "to", "cc", "bcc",
  "replyTo", "subject", "sentAt", "receivedAt", "messageId", "inReplyTo", "references", "textBody", "htmlBody",
  "attachments", "bodyValues", "hasAttachment", "size", "preview"];

export async function loadEmail(id) {
  const answer = await state.jmap.call("Email/get", { ids: [id], properties: READER_PROPERTIES,
    fetchTextBodyValues: true, maxBodyValueBytes: 2000000 });
  return answer.list[0] || null;
}

export function closeReader() {
  state.open = null;
  clear($("reader")).append(el("p", { class: "placeholder", text: "No message selected." }));
  document.body.classList.remove("reading");
}

export function fileName(subject, ext) {
  const base = (subject || "message").replace(/[\\/:*?"<>|\u0000-\u001f]+/g, "_").trim().slice(0, 100) || "message";
  return base + ext;
}

export function htmlUrl(email, part, remote) {
  const { jmap } = state;
  return `/webmail/html/${encodeURIComponent(jmap.accountId)}/${encodeURIComponent(email.id)}/${encodeURIComponent(part.partId)}` + (remote ? "?remote=1" : "");
}

// The count of remote resources the server blocked (X-Mailnet-Remote-Content), from a HEAD (GET if refused).
async function remoteCount(url) {
  for (const method of ["HEAD", "GET"]) {
    try {
      const response = await fetch(url, { method, credentials: "same-origin" });
      if (response.status === 405 && method === "HEAD") continue;
      return parseInt(response.headers.get("X-Mailnet-Remote-Content") || "0", 10) || 0;
    } catch (e) {
      return 0;
    }
  }
  return 0;
}

function htmlPart(email, part) {
  // No allow-scripts, no allow-same-origin: links may open (as ordinary pages of their own) in a new tab.
  const frame = el("iframe", { sandbox: "allow-popups allow-popups-to-escape-sandbox", class: "html-body", title: "Message body", src: htmlUrl(email, part, false),
    referrerpolicy: "no-referrer", dataset: { partId: part.partId } });
  const holder = el("div", { class: "html-holder" });
  holder.append(frame);
  remoteCount(htmlUrl(email, part, false)).then((count) => {
    if (!count) return;
    const bar = el("div", { class: "remote-bar", role: "status" },
      el("span", { text: `${count} remote image${count === 1 ? "" : "s"} blocked to protect your privacy. ` }),
      el("button", { type: "button", id: "show-remote", text: "Show remote images",
        onclick: () => { frame.src = htmlUrl(email, part, true); bar.remove(); } }));
    holder.prepend(bar);
  });
  return holder;
}

function textPart(email, part) {
  const value = email.bodyValues && email.bodyValues[part.partId];
  const pre = el("div", { class: "text-body" });
  if (value) {
    pre.append(linkify(value.value));
    if (value.isTruncated) pre.append(el("p", { class: "note", text: "(The text is cut here: save the message to see all of it.)" }));
  }
  return pre;
}

function body(email) {
  const html = (email.htmlBody || []).some((p) => p.type === "text/html");
  const parts = html ? email.htmlBody : (email.textBody || []);
  const box = el("div", { class: "body" });
  for (const part of parts) {
    if (part.type === "text/html") box.append(htmlPart(email, part));
    else if (part.type && part.type.startsWith("text/")) box.append(textPart(email, part));
  }
  if (!parts.length) box.append(el("p", { class: "note", text: "(This message has no text.)" }));
  return box;
}

function attachmentList(email) {
  const items = (email.attachments || []);
  if (!items.length) return null;
  const { jmap } = state;
  return el("ul", { class: "attachments", "aria-label": "Attachments" }, items.map((a) => {
    const name = a.name || (a.type === "message/rfc822" ? "message.eml" : "attachment");
    return el("li", {},
      el("a", { href: jmap.downloadUrl(a.blobId, name, a.type), download: name, class: "attachment", dataset: { blobId: a.blobId } },
        el("span", { class: "attachment-name", text: name }),
        el("span", { class: "attachment-size", text: ` ${a.type || ""} ${formatSize(a.size)}` })));
  }));
}

function headerLine(label, value, cls) {
  if (!value) return null;
  return el("div", { class: "header-line h-" + (cls || "") }, el("span", { class: "header-label", text: label + ": " }), el("span", { class: "header-value", text: value }));
}

export function renderEmail(email) {
  const reader = clear($("reader"));
  const box = mailboxOf(email);
  const isDraft = Boolean(email.keywords && email.keywords.$draft) || (box && box.id === roleId("drafts"));
  const button = (id, label, title, run) => el("button", { type: "button", id, title, text: label, onclick: run });
  const back = state.route.view === "search" ? `#/search/${encodeURIComponent(state.route.search)}` : `#/mailbox/${encodeURIComponent(state.route.mailboxId)}`;
  const actions = el("div", { class: "reader-actions" },
    el("a", { href: back, class: "back only-phone", text: "\u2190 Back" }),
    isDraft ? button("edit-draft", "Edit draft", "Continue writing", () => { location.hash = `#/compose/${encodeURIComponent(email.id)}`; }) : null,
    button("reply", "Reply", "Reply (r)", () => { location.hash = `#/compose/reply/${encodeURIComponent(email.id)}`; }),
    button("reply-all", "Reply all", "Reply all (a)", () => { location.hash = `#/compose/replyall/${encodeURIComponent(email.id)}`; }),
    button("forward", "Forward", "Forward (f)", () => { location.hash = `#/compose/forward/${encodeURIComponent(email.id)}`; }),
    button("forward-attached", "Forward as attachment", "Forward as attachment", () => { location.hash = `#/compose/attach/${encodeURIComponent(email.id)}`; }),
    button("reader-flag", email.keywords && email.keywords.$flagged ? "Unflag" : "Flag", "Flag", () => toggleKeyword("$flagged", [email.id])),
    button("reader-unread", "Mark unread", "Mark unread", () => setKeyword("$seen", false, [email.id])),
    button("reader-archive", "Archive", "Archive (e)", () => archive([email.id])),
    button("reader-delete", "Delete", "Delete (#)", () => remove([email.id])),
    el("a", { id: "save-eml", class: "button", href: state.jmap.downloadUrl(email.blobId, fileName(email.subject, ".eml"), "message/rfc822"),
      download: fileName(email.subject, ".eml"), text: "Save .eml" }));
  const parts = [actions,
    el("h2", { class: "subject", id: "reader-subject", text: email.subject || "(no subject)" }),
    el("div", { class: "headers" },
      headerLine("From", formatAddresses(email.from), "from"),
      headerLine("To", formatAddresses(email.to), "to"),
      headerLine("Cc", formatAddresses(email.cc), "cc"),
      headerLine("Bcc", formatAddresses(email.bcc), "bcc"),
      headerLine("Date", formatDate(email.sentAt || email.receivedAt, true), "date"),
      box ? headerLine("Folder", mailboxLabel(box), "in-folder") : null),
    attachmentList(email),
    body(email)];
  reader.append(...parts.filter(Boolean));
  document.body.classList.add("reading");
}

// The other messages of the conversation (Thread/get, then Email/get of its ids by back-reference).
async function showThread(email) {
  let answer;
  try {
    answer = await state.jmap.request([
      ["Thread/get", { ids: [email.threadId] }, "t"],
      ["Email/get", { "#ids": Jmap.ref("t", "Thread/get", "/list/*/emailIds"), properties: ["id", "from", "subject", "receivedAt", "mailboxIds", "keywords"] }, "g"]]);
  } catch (e) {
    return; // the message itself is shown; its conversation is extra
  }
  const others = answer.g.list;
  if (others.length < 2 || !state.open || state.open.id !== email.id) return;
  const items = others.map((e) => el("li", { class: e.id === email.id ? "thread-item current" : "thread-item" },
    e.id === email.id ? el("span", { text: `${shortAddresses(e.from)} — ${formatDate(e.receivedAt)} (this message)` })
      : el("a", { href: rowHref(e.id), text: `${shortAddresses(e.from)} — ${e.subject || "(no subject)"} — ${formatDate(e.receivedAt)}` })));
  $("reader").append(el("section", { class: "thread", "aria-label": "Conversation" },
    el("h3", { text: `In this conversation (${others.length})` }), el("ol", { class: "thread-list" }, items)));
}

export async function openEmail(id) {
  if (state.open && state.open.id === id) return;
  let email;
  try {
    email = await loadEmail(id);
  } catch (e) {
    showError("Opening the message", e);
    return;
  }
  if (state.route.emailId !== id) return; // the user went on meanwhile
  if (!email) {
    closeReader();
    notice("That message is gone (moved or deleted).");
    return;
  }
  state.open = email;
  remember(email.from); remember(email.to); remember(email.cc);
  renderEmail(email);
  if (email.threadId) showThread(email);
  if (!(email.keywords && email.keywords.$seen)) setKeyword("$seen", true, [email.id]);
}
