// The message list: Email/query pages (position/limit) and Email/get of
// only the rows on screen, in a virtual scroller (fixed row height), so a
// folder of 100,000 messages costs one page of rows.

import { $, clear, el, formatDate, shortAddresses, showError } from "./ui.js";
import { Jmap } from "./jmap.js";
import { remember, state } from "./state.js";

export const ROW = 60;       // px, one row (the CSS says the same)
// Rows asked of the server at a time: one screenful (set from the list's height at start), so the
// first Email/get is of the visible rows only.
let PAGE = 20;
const MARGIN = 4;            // rows drawn above and below the visible ones
export const LIST_PROPERTIES = ["id", "threadId", "mailboxIds", "keywords", "from", "to", "subject", "preview",
  "receivedAt", "hasAttachment", "size", "blobId"];

const list = {
  key: null,        // what the list shows (filter + collapse), to drop stale answers
  generation: 0,    // bumped by every (re)load of the same key
  applied: new Map(), // page -> generation of the answer drawn: an older answer coming later is dropped
  filter: null,
  total: 0,         // rows (known, or known so far when the total is not asked)
  exact: true,      // total is the server's
  pages: new Map(), // page -> Promise of ids
  ids: [],          // position -> id
  emails: new Map(),
  focus: -1,        // position of the keyboard focus row
  onDrawn: null,
};

export function emailById(id) {
  return list.emails.get(id) || null;
}

// Show a folder (filter {inMailbox}) or a search (any filter).
export function showList(filter, title) {
  const key = JSON.stringify([filter, state.collapse]);
  $("list-title").textContent = title || "";
  if (key === list.key) return refreshList();
  list.key = key;
  list.generation++;
  list.applied = new Map();
  list.filter = filter;
  const onlyMailbox = filter && Object.keys(filter).length === 1 && filter.inMailbox;
  const box = onlyMailbox ? state.byId[filter.inMailbox] : null;
  // The folder's count is the total when nothing else filters; otherwise it grows as pages come.
  list.exact = Boolean(box);
  list.total = box ? (state.collapse ? box.totalThreads : box.totalEmails) || 0 : PAGE;
  list.pages = new Map();
  list.ids = [];
  list.focus = -1;
  state.selected.clear();
  const scroller = $("list");
  scroller.scrollTop = 0;
  draw();
  return fetchVisible();
}

// Reload what is on screen (after a change or a push), keeping the scroll position.
export async function refreshList() {
  if (list.exact && list.filter) {
    const box = state.byId[list.filter.inMailbox];
    if (box) list.total = (state.collapse ? box.totalThreads : box.totalEmails) || 0;
  }
  list.pages = new Map();
  // A page asked before this refresh may be answered after it (from before a change): then it is
  // dropped (answers still come in while pushes keep refreshing: only older ones are left out).
  list.generation++;
  await fetchVisible(true);
}

function visibleRange() {
  const scroller = $("list");
  const first = Math.max(0, Math.floor(scroller.scrollTop / ROW) - MARGIN);
  const last = Math.min(list.total, Math.ceil((scroller.scrollTop + (scroller.clientHeight || 600)) / ROW) + MARGIN);
  return [first, last];
}

async function fetchVisible(force) {
  const [first, last] = visibleRange();
  const wanted = [];
  for (let page = Math.floor(first / PAGE); page * PAGE < Math.max(last, 1); page++) wanted.push(page);
  await Promise.all(wanted.map((page) => loadPage(page, force)));
  draw();
}

function loadPage(page, force) {
  if (list.pages.has(page) && !force) return list.pages.get(page);
  const key = list.key, generation = list.generation;
  const promise = (async () => {
    const query = { filter: list.filter, sort: [{ property: "receivedAt", isAscending: false }],
      collapseThreads: state.collapse, position: page * PAGE, limit: PAGE, calculateTotal: list.exact };
    let answer;
    try {
      answer = await state.jmap.request([
        ["Email/query", query, "q"],
        ["Email/get", { "#ids": Jmap.ref("q", "Email/query", "/ids"), properties: LIST_PROPERTIES }, "g"],
      ]);
    } catch (e) {
      if (list.pages.get(page) === promise) list.pages.delete(page);
      showError("Loading the messages", e);
      return [];
    }
    if (key !== list.key || generation < (list.applied.get(page) || 0)) return [];
    list.applied.set(page, generation);
    const ids = answer.q.ids;
    for (const email of answer.g.list) { list.emails.set(email.id, email); remember(email.from); remember(email.to); }
    ids.forEach((id, i) => { list.ids[page * PAGE + i] = id; });
    if (list.exact && typeof answer.q.total === "number") {
      list.total = answer.q.total;
      list.ids.length = Math.min(list.ids.length, list.total);
    } else if (!list.exact) {
      // Without a total: a full page leaves room for the next one; a short one is the end.
      const end = page * PAGE + ids.length;
      if (ids.length === PAGE) list.total = Math.max(list.total, end + PAGE);
      else { list.total = end; list.ids.length = Math.min(list.ids.length, end); }
    }
    return ids;
  })();
  list.pages.set(page, promise);
  return promise;
}

function senderOf(email) {
  const role = Object.keys(email.mailboxIds || {}).map((id) => state.byId[id] && state.byId[id].role)[0];
  if (role === "sent" || role === "drafts") return "To: " + shortAddresses(email.to);
  return shortAddresses(email.from) || "(no sender)";
}

export function rowHref(id) {
  const r = state.route;
  if (r.view === "search") return `#/search/${encodeURIComponent(r.search)}/email/${encodeURIComponent(id)}`;
  return `#/mailbox/${encodeURIComponent(r.mailboxId)}/email/${encodeURIComponent(id)}`;
}

function row(position, email) {
  const kw = email.keywords || {};
  const classes = ["row"];
  if (!kw.$seen) classes.push("unread");
  if (kw.$flagged) classes.push("flagged");
  if (state.route.emailId === email.id) classes.push("open");
  if (state.selected.has(email.id)) classes.push("selected");
  if (position === list.focus) classes.push("focus");
  const box = el("input", { type: "checkbox", class: "select", "aria-label": "Select", checked: state.selected.has(email.id) });
  box.addEventListener("click", (e) => {
    e.stopPropagation();
    if (box.checked) state.selected.add(email.id); else state.selected.delete(email.id);
    draw();
  });
  const node = el("a", { class: classes.join(" "), href: rowHref(email.id), role: "option",
    "aria-selected": state.selected.has(email.id) ? "true" : "false", dataset: { id: email.id, position: String(position) } },
    box,
    el("span", { class: "marks" },
      el("span", { class: "mark-unread", title: kw.$seen ? "" : "Unread", text: kw.$seen ? "" : "\u25cf" }),
      el("span", { class: "mark-flag", title: kw.$flagged ? "Flagged" : "", text: kw.$flagged ? "\u2605" : "" }),
      el("span", { class: "mark-attachment", title: email.hasAttachment ? "Has attachments" : "", text: email.hasAttachment ? "\u25a3" : "" })),
    el("span", { class: "sender", text: senderOf(email) }),
    el("span", { class: "date", title: formatDate(email.receivedAt, true), text: formatDate(email.receivedAt) }),
    el("span", { class: "subject", text: email.subject || "(no subject)" }),
    el("span", { class: "preview", text: email.preview || "" }));
  node.style.top = position * ROW + "px";
  return node;
}

export function draw() {
  const scroller = $("list");
  let spacer = scroller.querySelector(".spacer");
  if (!spacer) {
    clear(scroller);
    spacer = el("div", { class: "spacer" });
    scroller.append(spacer);
  }
  spacer.style.height = list.total * ROW + "px";
  for (const old of Array.from(scroller.querySelectorAll(".row, .empty"))) old.remove();
  const [first, last] = visibleRange();
  const frag = document.createDocumentFragment();
  let drawn = 0;
  for (let p = first; p < last; p++) {
    const id = list.ids[p];
    const email = id && list.emails.get(id);
    if (email) { frag.append(row(p, email)); drawn++; }
  }
  if (!list.total && list.ids.length === 0) frag.append(el("div", { class: "empty", text: state.route.view === "search" ? "No message matches." : "No messages in this folder." }));
  scroller.append(frag);
  if (drawn && list.onDrawn) { const f = list.onDrawn; list.onDrawn = null; f(); }
}

// Called once when rows are first drawn (the login-to-inbox timing).
export function whenDrawn(callback) {
  list.onDrawn = callback;
}

export function visibleIds() {
  return list.ids.filter(Boolean);
}

// j/k: the next/previous row (opened), scrolled into view.
export async function step(delta) {
  let position = list.focus;
  if (state.route.emailId) {
    const i = list.ids.indexOf(state.route.emailId);
    if (i >= 0) position = i;
  }
  position = Math.max(0, Math.min(list.total - 1, position + delta));
  if (position < 0) return;
  list.focus = position;
  const scroller = $("list");
  if (position * ROW < scroller.scrollTop) scroller.scrollTop = position * ROW;
  else if ((position + 1) * ROW > scroller.scrollTop + scroller.clientHeight) scroller.scrollTop = (position + 1) * ROW - scroller.clientHeight;
  await loadPage(Math.floor(position / PAGE));
  draw();
  const id = list.ids[position];
  if (id) location.hash = rowHref(id);
}

export function updateLocal(ids, change) {
  for (const id of ids) {
    const email = list.emails.get(id);
    if (email) change(email);
  }
  draw();
}

export function initList() {
  const scroller = $("list");
  PAGE = Math.max(10, Math.ceil((scroller.clientHeight || window.innerHeight) / ROW) + 2 * MARGIN);
  let pending = false;
  scroller.addEventListener("scroll", () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; draw(); fetchVisible(); });
  });
  window.addEventListener("resize", () => fetchVisible());
}
