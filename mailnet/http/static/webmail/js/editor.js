// The rich-text editor of the compose form: a contenteditable element with
// bold, italic, lists, links and quotes (the browser's editing commands), and
// the safe import of HTML into it (quoted mail, signatures): parsed in an
// inert DOMParser document, then rebuilt element by element from an
// allow-list with createElement (no markup is ever assigned).  What it holds
// is written out element by element (serialize) and cleaned again on the
// server before it is sent (/webmail/compose-html).

import { el } from "./ui.js";

const KEEP = new Set(["b", "strong", "i", "em", "u", "s", "strike", "ul", "ol", "li", "a", "blockquote", "p", "div",
  "br", "span", "pre", "code", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "table", "thead", "tbody", "tfoot", "tr",
  "td", "th", "sub", "sup", "small", "big", "tt", "font", "center", "section", "article", "header", "footer"]);
const SKIP = new Set(["script", "style", "template", "svg", "math", "iframe", "object", "embed", "noscript",
  "textarea", "select", "title", "head"]);

function safeHref(href) {
  return /^(https?:|mailto:)/i.test((href || "").replace(/[\u0000-\u0020\u007f]+/g, "")) ? href : null;
}

// Copy `from`'s children into `to`, keeping only what KEEP allows (text always).
function rebuild(from, to) {
  for (const node of Array.from(from.childNodes)) {
    if (node.nodeType === Node.TEXT_NODE) { to.append(document.createTextNode(node.data)); continue; }
    if (node.nodeType !== Node.ELEMENT_NODE) continue;
    const tag = node.localName;
    if (SKIP.has(tag)) continue;
    if (!KEEP.has(tag)) { rebuild(node, to); continue; }
    const copy = document.createElement(tag);
    if (tag === "a") {
      const href = safeHref(node.getAttribute("href"));
      if (href) copy.setAttribute("href", href);
    }
    for (const name of ["colspan", "rowspan", "start"]) if (node.hasAttribute(name)) copy.setAttribute(name, node.getAttribute(name));
    rebuild(node, copy);
    to.append(copy);
  }
  return to;
}

const VOID = new Set(["br", "hr", "img", "wbr"]);
const escapeText = (t) => t.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/\u00a0/g, "&nbsp;");
const escapeAttribute = (t) => escapeText(t).replace(/"/g, "&quot;");

// The editor's content as HTML text, written element by element (the page never reads or writes markup
// through innerHTML); attributes other than a safe href, colspan, rowspan and start are left out.
export function serialize(node) {
  let out = "";
  for (const child of node.childNodes) {
    if (child.nodeType === Node.TEXT_NODE) { out += escapeText(child.data); continue; }
    if (child.nodeType !== Node.ELEMENT_NODE) continue;
    const tag = child.localName;
    if (!/^[a-z][a-z0-9]*$/.test(tag) || SKIP.has(tag)) continue;
    let attributes = "";
    if (tag === "a" && safeHref(child.getAttribute("href"))) attributes += ` href="${escapeAttribute(child.getAttribute("href"))}"`;
    for (const name of ["colspan", "rowspan", "start"]) if (child.hasAttribute(name)) attributes += ` ${name}="${escapeAttribute(child.getAttribute(name))}"`;
    out += `<${tag}${attributes}>` + (VOID.has(tag) ? "" : serialize(child) + `</${tag}>`);
  }
  return out;
}

// HTML text (of a cleaned part, a signature) as a fragment of allowed elements.
export function importHTML(html) {
  const doc = new DOMParser().parseFromString(html || "", "text/html");
  const root = doc.querySelector(".mailnet-message") || doc.body;
  return rebuild(root, document.createDocumentFragment());
}

// Plain text as lines of <div>s (what the editor writes itself).
export function textToNodes(text) {
  const frag = document.createDocumentFragment();
  for (const line of (text || "").replace(/\n$/, "").split("\n")) frag.append(el("div", {}, line === "" ? el("br") : line));
  return frag;
}

const BUTTONS = [
  ["bold", "B", "Bold (Ctrl+B)", () => document.execCommand("bold")],
  ["italic", "I", "Italic (Ctrl+I)", () => document.execCommand("italic")],
  ["ul", "\u2022 List", "Bulleted list", () => document.execCommand("insertUnorderedList")],
  ["ol", "1. List", "Numbered list", () => document.execCommand("insertOrderedList")],
  ["quote", "\u201c Quote", "Quote", () => document.execCommand("formatBlock", false, "blockquote")],
  ["link", "Link", "Make a link of the selected text", null],
  ["unformat", "Clear", "Remove formatting", () => document.execCommand("removeFormat")],
];

// The editor: {box (toolbar + area), area, html()}; `changed` is called on every edit.
export function makeEditor(content, changed) {
  const area = el("div", { id: "compose-editor", class: "editor", contenteditable: "true", role: "textbox",
    "aria-multiline": "true", "aria-label": "Message text", spellcheck: "true" });
  area.append(content);
  document.execCommand("defaultParagraphSeparator", false, "div");
  const linkRow = el("div", { class: "editor-link", hidden: true });
  const linkInput = el("input", { type: "url", id: "editor-link-url", placeholder: "https://...", "aria-label": "Link address" });
  let saved = null;
  const applyLink = () => {
    const href = safeHref(linkInput.value.trim());
    linkRow.hidden = true;
    area.focus();
    if (saved) { const s = getSelection(); s.removeAllRanges(); s.addRange(saved); }
    if (href) { document.execCommand("createLink", false, href); changed(); }
  };
  linkInput.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); applyLink(); } if (e.key === "Escape") { linkRow.hidden = true; area.focus(); } });
  linkRow.append(linkInput, el("button", { type: "button", id: "editor-link-ok", text: "Add link", onclick: applyLink }));
  const bar = el("div", { class: "editor-bar", role: "toolbar", "aria-label": "Formatting" },
    BUTTONS.map(([name, label, title, run]) => el("button", { type: "button", class: "editor-" + name, id: "editor-" + name, title, "aria-label": title, text: label,
      onmousedown: (e) => e.preventDefault(), // keep the selection in the text
      onclick: () => {
        if (!run) {
          const s = getSelection();
          saved = s.rangeCount ? s.getRangeAt(0).cloneRange() : null;
          linkRow.hidden = false; linkInput.value = ""; linkInput.focus();
          return;
        }
        area.focus(); run(); changed();
      } })));
  area.addEventListener("input", changed);
  // Pasted HTML goes through the same allow-list as quoted mail.
  area.addEventListener("paste", (e) => {
    const html = e.clipboardData && e.clipboardData.getData("text/html");
    if (!html) return;
    e.preventDefault();
    const s = getSelection();
    if (!s.rangeCount) return;
    const range = s.getRangeAt(0);
    range.deleteContents();
    const frag = importHTML(html);
    const last = frag.lastChild;
    range.insertNode(frag);
    if (last) { range.setStartAfter(last); range.collapse(true); s.removeAllRanges(); s.addRange(range); }
    changed();
  });
  const box = el("div", { class: "editor-box" }, bar, linkRow, area);
  return { box, area, html: () => serialize(area) };
}
