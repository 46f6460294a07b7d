// The folder list: roles, unread counts, create / rename / delete.

import { $, clear, el, notice, showError } from "./ui.js";
import { checkSet } from "./jmap.js";
import { loadMailboxes, on, state } from "./state.js";

const ROLE_LABELS = { inbox: "Inbox", drafts: "Drafts", sent: "Sent", archive: "Archive", junk: "Junk", trash: "Trash" };

export function mailboxLabel(m) {
  return (m.role && ROLE_LABELS[m.role] && !m.parentId) ? ROLE_LABELS[m.role] : m.name;
}

export function renderFolders() {
  const nav = clear($("folders"));
  const list = el("ul", { class: "folder-list" });
  const current = state.route.view === "search" ? null : state.route.mailboxId;
  for (const m of state.mailboxes) {
    const unread = m.unreadEmails || 0;
    const link = el("a", {
      href: `#/mailbox/${encodeURIComponent(m.id)}`,
      class: "folder" + (m.id === current ? " current" : "") + (unread ? " has-unread" : ""),
      dataset: { id: m.id, role: m.role || "" },
      "aria-current": m.id === current ? "page" : null,
    },
      el("span", { class: "folder-icon role-" + (m.role || "none"), "aria-hidden": "true" }),
      el("span", { class: "folder-name", text: mailboxLabel(m) }),
      unread ? el("span", { class: "count", title: `${unread} unread`, text: String(unread) }) : null);
    if (m.depth) link.classList.add("depth-" + Math.min(m.depth, 4));
    list.append(el("li", {}, link));
  }
  nav.append(list);
  const currentBox = state.byId[current];
  nav.append(el("div", { class: "folder-actions" },
    el("button", { type: "button", id: "folder-new", text: "New folder", onclick: createFolder }),
    currentBox && !currentBox.role ? el("button", { type: "button", id: "folder-rename", text: "Rename", onclick: () => renameFolder(currentBox) }) : null,
    currentBox && !currentBox.role ? el("button", { type: "button", id: "folder-delete", text: "Delete folder", onclick: () => deleteFolder(currentBox) }) : null));
  const total = state.byRole.inbox ? state.byRole.inbox.unreadEmails : 0;
  document.title = total ? `(${total}) mailnet webmail` : "mailnet webmail";
}

async function mailboxSet(what, args) {
  try {
    const answer = await state.jmap.call("Mailbox/set", args);
    checkSet(answer, what);
    await loadMailboxes();
    return answer;
  } catch (e) {
    showError(what, e);
    return null;
  }
}

async function createFolder() {
  const name = prompt("Name of the new folder:");
  if (!name) return;
  const answer = await mailboxSet("Creating the folder", { create: { f: { name: name.trim(), parentId: null } } });
  if (answer && answer.created && answer.created.f) {
    notice(`Folder ${name} created`);
    location.hash = `#/mailbox/${encodeURIComponent(answer.created.f.id)}`;
  }
}

async function renameFolder(m) {
  const name = prompt("New name of the folder:", m.name);
  if (!name || name === m.name) return;
  if (await mailboxSet("Renaming the folder", { update: { [m.id]: { name: name.trim() } } })) notice(`Folder renamed to ${name}`);
}

async function deleteFolder(m) {
  if (!confirm(`Delete the folder ${m.name} and the messages in it?`)) return;
  const answer = await mailboxSet("Deleting the folder", { destroy: [m.id], onDestroyRemoveEmails: true });
  if (answer && (answer.destroyed || []).includes(m.id)) {
    notice(`Folder ${m.name} deleted`);
    location.hash = "#/mailbox/" + encodeURIComponent(state.byRole.inbox.id);
  }
}

on("mailboxes", renderFolders);
