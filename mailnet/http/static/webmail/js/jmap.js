// The JMAP client (RFC 8620, RFC 8621): session, batched method calls with
// back-references, uploads with progress, download URLs, EventSource push.
// Authentication is the webmail session cookie; every change carries the
// CSRF token (X-CSRF-Token) the login or /webmail/session gave.

export const CORE = "urn:ietf:params:jmap:core";
export const MAIL = "urn:ietf:params:jmap:mail";
export const SUBMISSION = "urn:ietf:params:jmap:submission";
export const VACATION = "urn:ietf:params:jmap:vacationresponse";

// An error the server gave: a request-level problem (RFC 8620 s3.6.1), a
// method error (s3.6.2) or a SetError (s5.3).  `type` is the JMAP type
// (e.g. overQuota, tooLarge, invalidRecipients), `description` its text.
export class JmapError extends Error {
  constructor(type, description, status) {
    super(description ? `${type}: ${description}` : type);
    this.type = type;
    this.description = description || "";
    this.status = status || 0;
  }
}

function shortType(type) {
  // "urn:ietf:params:jmap:error:limit" -> "limit"
  return typeof type === "string" ? type.replace(/^urn:[^ ]*:/, "") : String(type);
}

// Same-origin path of a URL the session gives (it is absolute, built from
// the Host header; the path keeps it on the page's own origin and scheme).
function localPath(url) {
  const u = new URL(url, location.href);
  return u.pathname + u.search;
}

export async function problem(response) {
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (body && (body.type || body.detail || body.error)) {
    return new JmapError(shortType(body.type || "error"), body.detail || body.description || body.error || "", response.status);
  }
  return new JmapError("http" + response.status, response.statusText || "request failed", response.status);
}

export class Jmap {
  constructor(csrf) {
    this.csrf = csrf;
    this.session = null;
    this.accountId = null;
    this.running = 0;   // API requests in flight
    this.waiting = [];  // resolvers of requests waiting for a slot
    this.maxConcurrent = 4;
  }

  // RFC 8620 maxConcurrentRequests: the app keeps to it (another tab of the
  // same user shares it on the server, so a 429 is still retried below).
  async slot() {
    if (this.running >= this.maxConcurrent) await new Promise((resolve) => this.waiting.push(resolve));
    this.running++;
  }

  release() {
    this.running--;
    const next = this.waiting.shift();
    if (next) next();
  }

  async connect() {
    const response = await fetch("/.well-known/jmap", { credentials: "same-origin", cache: "no-store" });
    if (!response.ok) throw await problem(response);
    this.session = await response.json();
    this.accountId = this.session.primaryAccounts[MAIL] || this.session.primaryAccounts[CORE];
    this.apiUrl = localPath(this.session.apiUrl);
    this.username = this.session.username;
    const core = this.session.capabilities[CORE] || {};
    this.maxConcurrent = Math.max(1, core.maxConcurrentRequests || 4);
    return this.session;
  }

  has(capability) {
    return Boolean(this.session && this.session.capabilities[capability]);
  }

  // Send method calls ([name, args, id]); "accountId" is filled in.  The
  // answer maps each call id to its arguments; a method error throws,
  // unless `allowErrors` (then the "error" arguments are returned).
  async request(calls, { allowErrors = false } = {}) {
    const using = [CORE, MAIL];
    if (this.has(SUBMISSION)) using.push(SUBMISSION);
    if (this.has(VACATION)) using.push(VACATION);
    const methodCalls = calls.map(([name, args, id]) => [name, Object.assign({ accountId: this.accountId }, args), id]);
    const body = JSON.stringify({ using, methodCalls });
    let response;
    for (let attempt = 0; ; attempt++) {
      await this.slot();
      try {
        response = await fetch(this.apiUrl, {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRF-Token": this.csrf },
          body,
        });
      } finally {
        this.release();
      }
      // 429: too many at once (another tab, or push-driven refreshes): wait a little and again.
      if (response.status !== 429 || attempt >= 4) break;
      await new Promise((resolve) => setTimeout(resolve, 250 * (attempt + 1)));
    }
    if (response.status === 401 && this.onUnauthorized) this.onUnauthorized();
    if (!response.ok) throw await problem(response);
    const answer = await response.json();
    const out = {};
    for (const [name, args, id] of answer.methodResponses) {
      if (name === "error") {
        if (!allowErrors) throw new JmapError(args.type, args.description || "", 200);
        out[id] = Object.assign({ error: true }, args);
      } else if (!(id in out)) {
        out[id] = args;
      } else {
        out[id + "/" + name] = args; // a method that answers with two responses
      }
    }
    return out;
  }

  async call(name, args) {
    return (await this.request([[name, args, "0"]]))["0"];
  }

  // A back-reference (RFC 8620 s3.7) to the result of call `id`.
  static ref(id, name, path) {
    return { resultOf: id, name, path };
  }

  uploadUrl() {
    return localPath(this.session.uploadUrl.replace("{accountId}", encodeURIComponent(this.accountId)));
  }

  // Upload a File as a blob; onProgress(fraction) from XHR upload events.
  upload(file, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", this.uploadUrl());
      xhr.withCredentials = true;
      xhr.setRequestHeader("X-CSRF-Token", this.csrf);
      xhr.setRequestHeader("Content-Type", file.type || "application/octet-stream");
      xhr.upload.onprogress = (e) => { if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total); };
      xhr.onload = () => {
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
        if (xhr.status >= 200 && xhr.status < 300 && body) {
          if (onProgress) onProgress(1);
          resolve(body);
        } else {
          const type = body && body.type ? shortType(body.type) : "http" + xhr.status;
          const limit = body && body.limit ? ` (${body.limit})` : "";
          reject(new JmapError(type, ((body && (body.detail || body.error)) || "upload refused") + limit, xhr.status));
        }
      };
      xhr.onerror = () => reject(new JmapError("network", "upload failed: the server could not be reached", 0));
      xhr.send(file);
    });
  }

  downloadUrl(blobId, name, type) {
    return localPath(this.session.downloadUrl
      .replace("{accountId}", encodeURIComponent(this.accountId))
      .replace("{blobId}", encodeURIComponent(blobId))
      .replace("{name}", encodeURIComponent(name || "download"))
      .replace("{type}", encodeURIComponent(type || "application/octet-stream")));
  }

  // Push (RFC 8620 s7.3): onChange(changedTypes) for our account.
  events(onChange, onError) {
    const url = localPath(this.session.eventSourceUrl
      .replace("{types}", "*").replace("{closeafter}", "no").replace("{ping}", "30"));
    const source = new EventSource(url, { withCredentials: true });
    source.addEventListener("state", (e) => {
      let data = null;
      try { data = JSON.parse(e.data); } catch (err) { return; }
      const changed = data.changed && data.changed[this.accountId];
      if (changed) onChange(changed);
    });
    source.onerror = () => { if (onError) onError(source); };
    return source;
  }
}

// Raise the first SetError of a /set answer (notCreated/notUpdated/notDestroyed).
export function checkSet(args, what) {
  for (const key of ["notCreated", "notUpdated", "notDestroyed"]) {
    const failed = args && args[key];
    if (failed) {
      for (const id of Object.keys(failed)) {
        const e = failed[id];
        const props = e.properties ? ` (${e.properties.join(", ")})` : "";
        throw new JmapError(e.type, (what ? what + ": " : "") + (e.description || "") + props, 200);
      }
    }
  }
  return args;
}
