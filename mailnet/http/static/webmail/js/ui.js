// DOM helpers: everything is built with createElement/textContent, never
// innerHTML, so no mail text can become markup.

export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

export const $ = (id) => document.getElementById(id);

// Notices at the bottom: errors stay until closed, infos go after a while.
export function notice(text, { kind = "info", timeout = 6000, action = null } = {}) {
  const box = el("div", { class: "notice " + kind, role: kind === "error" ? "alert" : "status" });
  box.append(el("span", { class: "notice-text", text }));
  if (action) box.append(el("button", { type: "button", class: "notice-action", text: action.label, onclick: () => { action.run(); box.remove(); } }));
  box.append(el("button", { type: "button", class: "notice-close", "aria-label": "Close", text: "\u00d7", onclick: () => box.remove() }));
  $("notices").append(box);
  if (timeout && kind !== "error") setTimeout(() => box.remove(), timeout);
  return box;
}

const MEANINGS = {
  overQuota: "the mailbox is over its quota",
  tooLarge: "it is too large",
  invalidRecipients: "a recipient address is not valid",
  noRecipients: "there is no recipient",
  forbiddenFrom: "you may not send as this address",
  forbiddenToSend: "you may not send mail",
  tooManyRecipients: "there are too many recipients",
  blobNotFound: "an attachment is missing (upload it again)",
  stateMismatch: "something changed meanwhile; try again",
  mailboxHasEmail: "the folder is not empty",
  mailboxHasChild: "the folder has subfolders",
  invalidProperties: "a field is not valid",
  forbidden: "the server does not allow it",
  limit: "a server limit was reached",
  serverUnavailable: "the server is busy; try again",
  csrf: "the page's session is stale; reload",
};

// A refused call shown as an error notice: what we tried, the JMAP type and the server's words.
export function showError(what, error) {
  const type = error && error.type ? error.type : "";
  const meaning = MEANINGS[type] ? ` (${MEANINGS[type]})` : "";
  const detail = error && error.description ? error.description : (error && error.message) || String(error);
  const text = type ? `${what} failed: ${type}${meaning}: ${detail}` : `${what} failed: ${detail}`;
  console.warn(text);
  return notice(text, { kind: "error" });
}

export function formatSize(n) {
  if (n === undefined || n === null) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(n < 10240 ? 1 : 0)} KB`;
  return `${(n / 1048576).toFixed(1)} MB`;
}

export function formatDate(iso, long) {
  if (!iso) return "";
  const d = new Date(iso);
  if (long) return d.toLocaleString();
  const now = new Date();
  if (d.toDateString() === now.toDateString()) return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (d.getFullYear() === now.getFullYear()) return d.toLocaleDateString([], { month: "short", day: "numeric" });
  return d.toLocaleDateString();
}

export function formatAddress(a) {
  if (!a) return "";
  return a.name ? `${a.name} <${a.email}>` : a.email || "";
}

export function formatAddresses(list) {
  return (list || []).map(formatAddress).join(", ");
}

export function shortAddresses(list) {
  return (list || []).map((a) => a.name || a.email).join(", ");
}

// "A <a@x>, b@y" -> [{name, email}]; commas inside quotes are kept.
export function parseAddresses(text) {
  const out = [];
  let current = "", quoted = false;
  for (const ch of text || "") {
    if (ch === '"') quoted = !quoted;
    if ((ch === "," || ch === ";") && !quoted) { out.push(current); current = ""; } else current += ch;
  }
  out.push(current);
  return out.map((s) => s.trim()).filter(Boolean).map((s) => {
    const m = s.match(/^(.*)<([^>]*)>\s*$/);
    if (m) {
      const name = m[1].trim().replace(/^"(.*)"$/, "$1");
      return name ? { name, email: m[2].trim() } : { email: m[2].trim() };
    }
    return { email: s };
  });
}

// Plain text with links made clickable by DOM construction (never markup).
export function linkify(text) {
  const frag = document.createDocumentFragment();
  const re = /\bhttps?:\/\/[^\s<>"')\]]+/g;
  let last = 0, m;
  while ((m = re.exec(text)) !== null) {
    if (m.index > last) frag.append(document.createTextNode(text.slice(last, m.index)));
    frag.append(el("a", { href: m[0], target: "_blank", rel: "noopener noreferrer", text: m[0] }));
    last = m.index + m[0].length;
  }
  if (last < text.length) frag.append(document.createTextNode(text.slice(last)));
  return frag;
}
