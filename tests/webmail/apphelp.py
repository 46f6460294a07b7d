"""
Helpers for the webmail app's browser tests (tests/webmail/test_app_*.py):
deliver mail (swaks and smtplib), read it back over IMAP (imapclient),
log in through the app's form, record every request a page makes.
The fixtures that use them are in conftest.py.
"""

from __future__ import annotations

import email.utils
import os
import smtplib
import ssl
import subprocess
import time
from urllib.parse import urlparse

from imapclient import IMAPClient

ALICE = ("alice@example.test", "alice-pw")
BOB = ("bob@example.test", "bob-pw")
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SHOTS = os.path.join(ROOT, "docs", "webmail")


def swaks(server, subject, body="Hello from swaks.", sender="bob@elsewhere.test", to=ALICE[0], extra=()):
    """Deliver with swaks over SMTP (a foreign sender: local-domain spoofing is refused)."""
    result = subprocess.run(
        ["swaks", "--server", "127.0.0.1", "--port", str(server.port("smtp")), "--from", sender, "--to", to,
         "--header", f"Subject: {subject}", "--header", f"From: Bob Example <{sender}>", "--body", body, *extra],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def deliver(server, raw: bytes, to=ALICE[0], sender="bob@elsewhere.test"):
    """Deliver a whole message (bytes, CRLF) with smtplib."""
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as client:
        client.sendmail(sender, [to], raw)


def message(subject, body="Hello.", sender="Bob Example <bob@elsewhere.test>", to=ALICE[0], headers=()):
    if not any(h.lower().startswith("message-id:") for h in headers):
        headers = [f"Message-ID: {email.utils.make_msgid(domain='elsewhere.test')}", *headers]
    lines = [f"From: {sender}", f"To: {to}", f"Subject: {subject}", f"Date: {email.utils.formatdate()}",
             *headers, "MIME-Version: 1.0",
             "Content-Type: text/plain; charset=utf-8", "", body.replace("\r\n", "\n").replace("\n", "\r\n")]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def imap(server, user=ALICE):
    # IMAPS with the server's own certificate: the server keeps its rule of no password before TLS.
    context = ssl.create_default_context(cafile=server.certFile)
    context.check_hostname = False
    client = IMAPClient("127.0.0.1", port=server.port("imaps"), ssl=True, ssl_context=context, timeout=30)
    client.login(*user)
    return client


def waitFor(predicate, timeout=30, interval=0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


def imapFind(server, user, folder, subject, timeout=30):
    """(uid, raw bytes, flags) of the newest message with ``subject`` in ``folder``, waiting for it."""
    def look():
        with imap(server, user) as client:
            client.select_folder(folder, readonly=True)
            uids = client.search(["SUBJECT", subject])
            if not uids:
                return None
            uid = max(uids)
            data = client.fetch([uid], ["BODY.PEEK[]", "FLAGS"])[uid]
            return uid, data[b"BODY[]"], data[b"FLAGS"]
    return waitFor(look, timeout)


def login(page, server, user=ALICE):
    page.goto(server.url("/"))
    page.fill("#login-user", user[0])
    page.fill("#login-password", user[1])
    page.click("#login-submit")
    page.wait_for_selector("#app:not([hidden])")


def setPlainText(page, plain: bool):
    """The user's "compose in plain text" setting, through /webmail/settings from the page (before a compose)."""
    status = page.evaluate("""async (plain) => {
        const session = await (await fetch("/webmail/session")).json();
        const r = await fetch("/webmail/settings", { method: "PUT", headers: { "Content-Type": "application/json",
            "X-CSRF-Token": session.csrf }, body: JSON.stringify({ plainText: plain }) });
        return r.status; }""", plain)
    assert status == 200, status


def row(page, subject):
    """The list row whose subject is ``subject``."""
    return page.locator(".row", has=page.locator(".subject", has_text=subject))


def openMessage(page, subject, timeout=20000):
    row(page, subject).first.click(timeout=timeout)
    page.wait_for_selector(f"#reader-subject:text-is('{subject}')", timeout=timeout)


def expectOpen(page, subject, timeout=20000):
    """Wait until the reader shows ``subject``; say what the page shows instead if it does not."""
    try:
        page.wait_for_selector(f"#reader-subject:text-is('{subject}')", timeout=timeout)
    except Exception:
        shown = page.locator("#reader-subject").all_text_contents()
        rows = page.locator(".row .subject").all_text_contents()
        notices = page.locator(".notice").all_text_contents()
        raise AssertionError(f"{subject!r} not open: url {page.url}, reader {shown}, rows {rows}, notices {notices}") from None


def shot(page, name):
    os.makedirs(SHOTS, exist_ok=True)
    page.screenshot(path=os.path.join(SHOTS, name + ".png"))


class Requests:
    """Every request a page (and its frames) makes, to check none leaves 127.0.0.1."""

    def __init__(self, page):
        self.urls = []
        page.on("request", lambda request: self.urls.append(request.url))

    def outside(self):
        bad = []
        for url in self.urls:
            parsed = urlparse(url)
            if parsed.scheme in ("data", "blob", "about"):
                continue
            if parsed.hostname not in ("127.0.0.1", "::1", "localhost"):
                bad.append(url)
        return bad
