// The webmail's entry point: login and session resume, hash routes, push.

import { $, notice, showError } from "./ui.js";
import { Jmap, problem } from "./jmap.js";
import { loadMailboxes, roleId, state } from "./state.js";
import { renderFolders } from "./folders.js";
import { initList, refreshList, showList, whenDrawn } from "./list.js";
import { renderToolbar } from "./actions.js";
import { closeReader, openEmail } from "./reader.js";
import { leaveCompose, openCompose } from "./compose.js";
import { initKeys, toggleHelp } from "./keys.js";
import { closeSettings, openSettings } from "./settings.js";

let events = null;
let textSearch = null; // whether Email/query takes the "text" filter

function showLogin(message) {
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("login-user").focus();
}

async function login(event) {
  event.preventDefault();
  performance.clearMarks();
  performance.mark("login-start");
  const button = $("login-submit");
  button.disabled = true;
  $("login-error").textContent = "";
  try {
    const response = await fetch("/webmail/login", {
      method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: $("login-user").value.trim(), password: $("login-password").value }),
    });
    if (!response.ok) {
      const error = await problem(response);
      const text = response.status === 401 ? "Login failed: wrong address or password."
        : response.status === 429 ? "Too many attempts: wait a moment and try again."
          : `Login refused: ${error.description || error.type}`;
      showLogin(text);
      return;
    }
    const body = await response.json();
    $("login-password").value = "";
    await boot(body);
  } catch (e) {
    showLogin("The server could not be reached.");
  } finally {
    button.disabled = false;
  }
}

async function logout() {
  try {
    await fetch("/webmail/logout", { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": state.jmap.csrf } });
  } catch (e) { /* leaving anyway */ }
  if (events) events.close();
  for (const key of Object.keys(localStorage)) if (key.startsWith("webmail.draft.")) localStorage.removeItem(key);
  location.replace("/");
}

function parseRoute(hash) {
  const parts = hash.replace(/^#\/?/, "").split("/").filter((p) => p !== "").map(decodeURIComponent);
  const inbox = roleId("inbox");
  if (parts[0] === "compose") {
    if (parts.length === 1) return { view: "compose", mode: "new" };
    if (parts.length === 2) return { view: "compose", mode: "draft", id: parts[1] };
    return { view: "compose", mode: parts[1], id: parts[2] };
  }
  if (parts[0] === "settings") return { view: "settings" };
  if (parts[0] === "search" && parts[1]) return { view: "search", search: parts[1], emailId: parts[3] || null };
  if (parts[0] === "mailbox" && parts[1] && state.byId[parts[1]]) return { view: "mailbox", mailboxId: parts[1], emailId: parts[3] || null };
  return { view: "mailbox", mailboxId: inbox, emailId: null };
}

async function searchFilter(text) {
  if (textSearch === null) {
    const answer = await state.jmap.request([["Email/query", { filter: { text: "x" }, limit: 1 }, "t"]], { allowErrors: true });
    textSearch = !answer.t.error;
  }
  if (textSearch) return { text };
  // A server without full-text search: the header fields it can match.
  return { operator: "OR", conditions: [{ from: text }, { to: text }, { cc: text }, { subject: text }] };
}

async function route() {
  const r = parseRoute(location.hash);
  if (r.view === "compose") {
    if (!state.lastListHash) {
      state.route = { view: "mailbox", mailboxId: roleId("inbox"), emailId: null };
      state.lastListHash = `#/mailbox/${encodeURIComponent(state.route.mailboxId)}`;
      renderFolders();
      showList({ inMailbox: state.route.mailboxId }, "Inbox");
    }
    state.route = Object.assign({}, state.route, { view: "compose", emailId: null });
    closeSettings();
    document.body.classList.add("composing");
    return openCompose(r.mode, r.id);
  }
  await leaveCompose();
  if (r.view === "settings") {
    if (!state.lastListHash) {
      state.route = { view: "mailbox", mailboxId: roleId("inbox"), emailId: null };
      state.lastListHash = `#/mailbox/${encodeURIComponent(state.route.mailboxId)}`;
      renderFolders();
      showList({ inMailbox: state.route.mailboxId }, "Inbox");
    }
    state.route = Object.assign({}, state.route, { view: "settings", emailId: null });
    return openSettings();
  }
  closeSettings();
  state.route = r;
  state.lastListHash = r.view === "search" ? `#/search/${encodeURIComponent(r.search)}` : `#/mailbox/${encodeURIComponent(r.mailboxId)}`;
  renderFolders();
  renderToolbar();
  if (r.view === "search") {
    $("search").value = r.search;
    showList(await searchFilter(r.search), `Search: ${r.search}`);
  } else {
    const box = state.byId[r.mailboxId];
    showList({ inMailbox: r.mailboxId }, box ? "" : "");
  }
  document.body.classList.remove("folders-open");
  if (r.emailId) openEmail(r.emailId);
  else closeReader();
}

let pushTimer = null;
function pushed(changed) {
  if (!changed.Email && !changed.Mailbox) return;
  clearTimeout(pushTimer);
  pushTimer = setTimeout(async () => {
    try {
      await loadMailboxes();
      await refreshList();
    } catch (e) {
      showError("Updating", e);
    }
  }, 150);
}

function startPush() {
  if (events) events.close();
  events = state.jmap.events(pushed, async (source) => {
    if (source.readyState !== EventSource.CLOSED) return; // the browser reconnects by itself
    const response = await fetch("/webmail/session", { credentials: "same-origin" }).catch(() => null);
    if (response && response.status === 401) showLogin("Your session ended: log in again.");
    else setTimeout(startPush, 5000);
  });
}

async function boot(session) {
  const jmap = new Jmap(session.csrf);
  jmap.onUnauthorized = () => showLogin("Your session ended: log in again.");
  state.jmap = jmap;
  state.collapse = localStorage.getItem("webmail.collapse") === "1";
  try {
    await jmap.connect();
    await loadMailboxes();
  } catch (e) {
    showLogin("");
    showError("Opening the mailbox", e);
    return;
  }
  $("login").hidden = true;
  $("app").hidden = false;
  $("user").textContent = jmap.username;
  whenDrawn(() => {
    performance.mark("inbox-drawn");
    if (performance.getEntriesByName("login-start").length) performance.measure("login-to-inbox", "login-start", "inbox-drawn");
  });
  startPush();
  await route();
}

async function start() {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("compose-button").addEventListener("click", () => { location.hash = "#/compose"; });
  $("help-button").addEventListener("click", () => toggleHelp());
  $("settings-button").addEventListener("click", () => { location.hash = "#/settings"; });
  $("menu-toggle").addEventListener("click", () => document.body.classList.toggle("folders-open"));
  $("search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const q = $("search").value.trim();
    location.hash = q ? `#/search/${encodeURIComponent(q)}` : "#/";
    $("search").blur();
  });
  window.addEventListener("hashchange", () => { if (state.jmap && !$("app").hidden) route(); });
  initList();
  initKeys();
  let response = null;
  try {
    response = await fetch("/webmail/session", { credentials: "same-origin", cache: "no-store" });
  } catch (e) {
    return showLogin("The server could not be reached.");
  }
  if (response.ok) await boot(await response.json());
  else showLogin("");
}

window.addEventListener("unhandledrejection", (e) => showError("Something", e.reason || {}));
start();
