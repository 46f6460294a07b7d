// Changes to messages: keywords, move, archive, delete (to Trash; for good
// in Trash), junk.  They act on the ticked rows, or on the open message.

import { $, clear, el, notice, showError } from "./ui.js";
import { checkSet } from "./jmap.js";
import { loadMailboxes, mailboxOf, on, roleId, state } from "./state.js";
import { draw, emailById, refreshList, updateLocal } from "./list.js";
import { mailboxLabel } from "./folders.js";

export function targets() {
  if (state.selected.size) return Array.from(state.selected);
  return state.route.emailId ? [state.route.emailId] : [];
}

async function emailSet(what, args) {
  const answer = await state.jmap.call("Email/set", args);
  checkSet(answer, what);
  return answer;
}

async function afterChange(ids, { leave = false } = {}) {
  await loadMailboxes();
  if (leave && ids.includes(state.route.emailId)) {
    const r = state.route;
    location.hash = r.view === "search" ? `#/search/${encodeURIComponent(r.search)}` : `#/mailbox/${encodeURIComponent(r.mailboxId)}`;
  }
  for (const id of ids) state.selected.delete(id);
  await refreshList();
}

export async function setKeyword(keyword, value, ids = targets()) {
  if (!ids.length) return notice("Select a message first");
  const update = {};
  for (const id of ids) update[id] = { ["keywords/" + keyword]: value ? true : null };
  try {
    await emailSet("Changing the message", { update });
    updateLocal(ids, (e) => { e.keywords = Object.assign({}, e.keywords); if (value) e.keywords[keyword] = true; else delete e.keywords[keyword]; });
    if (state.open && ids.includes(state.open.id)) {
      if (value) state.open.keywords[keyword] = true; else delete state.open.keywords[keyword];
      const flag = $("reader-flag");
      if (flag && keyword === "$flagged") flag.textContent = value ? "Unflag" : "Flag";
    }
    await afterChange(ids);
  } catch (e) {
    showError("Changing the message", e);
  }
}

export async function toggleKeyword(keyword, ids = targets()) {
  if (!ids.length) return notice("Select a message first");
  const first = emailById(ids[0]) || state.open;
  const has = Boolean(first && first.keywords && first.keywords[keyword]);
  return setKeyword(keyword, !has, ids);
}

export async function moveTo(mailboxId, ids = targets(), what = "Moving") {
  if (!ids.length) return notice("Select a message first");
  if (!mailboxId) return showError(what, { type: "", description: "that folder does not exist" });
  const update = {};
  for (const id of ids) update[id] = { mailboxIds: { [mailboxId]: true } };
  try {
    await emailSet(what, { update });
    const box = state.byId[mailboxId];
    notice(`${ids.length === 1 ? "Message" : ids.length + " messages"} moved to ${box ? mailboxLabel(box) : "folder"}`);
    await afterChange(ids, { leave: true });
  } catch (e) {
    showError(what, e);
  }
}

export const archive = (ids = targets()) => moveTo(roleId("archive"), ids, "Archiving");
export const junk = (ids = targets()) => moveTo(roleId("junk"), ids, "Marking as junk");

export async function remove(ids = targets()) {
  if (!ids.length) return notice("Select a message first");
  const trash = roleId("trash");
  const inTrash = ids.every((id) => {
    const e = emailById(id) || (state.open && state.open.id === id ? state.open : null);
    const box = mailboxOf(e);
    return box && box.id === trash;
  });
  if (!inTrash) return moveTo(trash, ids, "Deleting");
  if (!confirm(`Delete ${ids.length === 1 ? "this message" : ids.length + " messages"} for good?`)) return;
  try {
    await emailSet("Deleting", { destroy: ids });
    notice(`${ids.length === 1 ? "Message" : ids.length + " messages"} deleted for good`);
    await afterChange(ids, { leave: true });
  } catch (e) {
    showError("Deleting", e);
  }
}

function moveMenu() {
  const select = el("select", { id: "move-to", "aria-label": "Move to folder" },
    el("option", { value: "", text: "Move to\u2026" }),
    state.mailboxes.map((m) => el("option", { value: m.id, text: "\u00a0".repeat(2 * (m.depth || 0)) + mailboxLabel(m) })));
  select.addEventListener("change", () => {
    const id = select.value;
    select.value = "";
    if (id) moveTo(id);
  });
  return select;
}

export function renderToolbar() {
  const bar = clear($("toolbar"));
  const button = (id, label, title, run) => el("button", { type: "button", id, title, text: label, onclick: run });
  bar.append(
    el("input", { type: "checkbox", id: "select-all", title: "Select all shown", "aria-label": "Select all shown",
      onclick: (e) => selectAll(e.target.checked) }),
    button("act-read", "Read", "Mark read", () => setKeyword("$seen", true)),
    button("act-unread", "Unread", "Mark unread", () => setKeyword("$seen", false)),
    button("act-flag", "Flag", "Flag / unflag", () => toggleKeyword("$flagged")),
    button("act-archive", "Archive", "Archive (e)", () => archive()),
    button("act-junk", "Junk", "Mark as junk", () => junk()),
    button("act-delete", "Delete", "Delete (#)", () => remove()),
    moveMenu(),
    el("label", { class: "threads-toggle", title: "Conversation view" },
      el("input", { type: "checkbox", id: "threads", checked: state.collapse,
        onchange: async (e) => {
          state.collapse = e.target.checked;
          localStorage.setItem("webmail.collapse", state.collapse ? "1" : "");
          try { await loadMailboxes(); } catch (err) { showError("Loading the folders", err); }
          window.dispatchEvent(new HashChangeEvent("hashchange"));
        } }),
      " Conversations"));
}

function selectAll(on) {
  for (const node of $("list").querySelectorAll(".row")) {
    if (on) state.selected.add(node.dataset.id); else state.selected.delete(node.dataset.id);
  }
  if (!on) state.selected.clear();
  draw();
}

on("mailboxes", () => { if ($("toolbar").firstChild) renderToolbar(); });
