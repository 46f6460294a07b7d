// Keyboard shortcuts and their help overlay.

import { $, clear, el } from "./ui.js";
import { state } from "./state.js";
import { archive, remove } from "./actions.js";
import { step } from "./list.js";

export const SHORTCUTS = [
  ["c", "Compose a new message"],
  ["r", "Reply"],
  ["a", "Reply all"],
  ["f", "Forward"],
  ["e", "Archive"],
  ["#", "Delete (to Trash; for good in Trash)"],
  ["j", "Next message"],
  ["k", "Previous message"],
  ["/", "Search"],
  ["?", "This help"],
  ["Esc", "Close help / back to the list"],
];

export function toggleHelp(show) {
  const help = $("help");
  const open = show === undefined ? help.hidden : show;
  if (open) {
    clear(help).append(el("div", { class: "help-box", role: "dialog", "aria-modal": "true", "aria-label": "Keyboard shortcuts" },
      el("h2", { text: "Keyboard shortcuts" }),
      el("dl", {}, SHORTCUTS.map(([k, what]) => [el("dt", {}, el("kbd", { text: k })), el("dd", { text: what })])),
      el("button", { type: "button", id: "help-close", text: "Close", onclick: () => toggleHelp(false) })));
    help.hidden = false;
    $("help-close").focus();
  } else {
    help.hidden = true;
  }
}

function typing(target) {
  return target && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}

function open(path) {
  const id = state.route.emailId;
  if (id) location.hash = `#/compose/${path}/${encodeURIComponent(id)}`;
}

export function initKeys() {
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "Escape") {
      if (!$("help").hidden) return toggleHelp(false);
      if (typing(e.target)) { e.target.blur(); return; }
      if (state.route.emailId) location.hash = state.lastListHash || "#/";
      return;
    }
    if (typing(e.target) || $("app").hidden) return;
    const actions = {
      c: () => { location.hash = "#/compose"; },
      r: () => open("reply"),
      a: () => open("replyall"),
      f: () => open("forward"),
      e: () => archive(),
      "#": () => remove(),
      j: () => step(1),
      k: () => step(-1),
      "/": () => $("search").focus(),
      "?": () => toggleHelp(),
    };
    const action = actions[e.key];
    if (action && !(state.route.view === "compose" && e.key !== "?")) {
      e.preventDefault();
      action();
    }
  });
}
