"""
The server side's two layers in a real Chromium (Debian's, tests/webmail/
conftest.py): a hostile HTML message (tests/http/hostilemail.py, the whole
corpus of tests/http/hostile/) cleaned by /webmail/html/ and shown the way
the app shows it, in ``<iframe sandbox="">`` on the app's page (its CSP).
Every request the browser makes is recorded (and anything not for
127.0.0.1 is aborted before it leaves): none may leave, no dialog may open,
no script may log its "script executed" marker.  The same message with
``?remote=1`` is the control: there the recorder does see the remote images.
"""

import base64
import json
import smtplib
import time
import urllib.parse
import urllib.request

import pytest

from tests.conftest import USERS
from tests.http.hostilemail import SUBJECT, hostileMessage

pytestmark = pytest.mark.slow

ALICE = ("alice@example.test", USERS["alice@example.test"])
CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    from tests.harness import MailServer

    server = MailServer(tmp_path_factory.mktemp("webmail-browser"))
    server.start()
    for name, password in USERS.items():
        server.addUser(name, password)
    yield server
    server.stop()


def jmap(server, *calls):
    body = json.dumps({"using": [CORE, MAIL],
                       "methodCalls": [[name, args, str(n)] for n, (name, args) in enumerate(calls)]}).encode()
    auth = base64.b64encode(f"{ALICE[0]}:{ALICE[1]}".encode()).decode()
    request = urllib.request.Request(server.url("/jmap/api/"), data=body, headers={
        "Content-Type": "application/json", "Authorization": "Basic " + auth})
    with urllib.request.urlopen(request, timeout=60) as response:
        return [args for name, args, _ in json.load(response)["methodResponses"]]


def hostileEmail(server):
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as smtp:
        smtp.sendmail("attacker@evil.example", [ALICE[0]], hostileMessage())
    session = json.load(urllib.request.urlopen(urllib.request.Request(server.url("/.well-known/jmap"), headers={
        "Authorization": "Basic " + base64.b64encode(f"{ALICE[0]}:{ALICE[1]}".encode()).decode()}), timeout=60))
    accountId = session["primaryAccounts"][CORE]
    for _ in range(100):
        query, got = jmap(server, ("Email/query", {"accountId": accountId}),
                          ("Email/get", {"accountId": accountId, "properties": ["subject", "htmlBody"],
                                         "#ids": {"resultOf": "0", "name": "Email/query", "path": "/ids"}}))
        for email in got["list"]:
            if email["subject"] == SUBJECT:
                return f"/webmail/html/{accountId}/{email['id']}/{email['htmlBody'][0]['partId']}"
        time.sleep(0.2)
    raise AssertionError("the hostile message was not delivered")


class Recorder:
    """Every request of a browser context; anything not for our server is aborted, never sent."""

    def __init__(self, context, origin):
        self.origin = origin
        self.requests = []
        self.left = []
        self.dialogs = []
        self.console = []
        context.route("**/*", self.route)

    def route(self, route):
        url = route.request.url
        self.requests.append(url)
        if urllib.parse.urlsplit(url).hostname == "127.0.0.1":
            route.continue_()
        else:
            self.left.append(url)
            route.abort()

    def watch(self, page):
        page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))
        page.on("console", lambda message: self.console.append(message.text))


SHOW = """async (src) => {
    const frame = document.createElement("iframe");
    frame.setAttribute("sandbox", "");
    frame.id = "message";
    const loaded = new Promise((resolve) => frame.addEventListener("load", () => resolve(true)));
    frame.src = src;
    document.body.appendChild(frame);
    return await loaded;
}"""

LOGIN = """async ([username, password]) => {
    const r = await fetch("/webmail/login", {method: "POST", headers: {"Content-Type": "application/json"},
                                            body: JSON.stringify({username, password})});
    return r.status;
}"""


def test_hostile_message_in_the_sandboxed_frame(web, browser):
    path = hostileEmail(web)
    origin = web.url("/").rstrip("/")
    context = browser.new_context()
    recorder = Recorder(context, origin)
    page = context.new_page()
    recorder.watch(page)
    try:
        response = page.goto(origin + "/")
        assert response.headers["content-security-policy"].startswith("default-src 'none'; script-src 'self'")
        assert page.evaluate(LOGIN, list(ALICE)) == 200
        assert page.evaluate(SHOW, path) is True
        frame = page.frame_locator("#message")
        frame.locator("text=refresh body").wait_for(timeout=30_000)
        page.wait_for_timeout(2000)  # give a meta refresh, a late onload or a CSS fetch their chance
        assert recorder.left == [], recorder.left
        assert all(url.startswith(origin + "/") for url in recorder.requests), recorder.requests
        assert recorder.dialogs == []
        assert not [m for m in recorder.console if "script executed" in m], recorder.console
        assert recorder.requests.count(origin + path) == 1
        assert page.frames[1].url == origin + path  # not navigated away (meta refresh, base, forms)
        # The cid: image was inlined and shows (1x1), inside a frame with no script.
        assert frame.locator("img[alt=logo]").evaluate("img => img.naturalWidth") == 1

        # The control: asked for remote images, the frame does try to fetch them, and the recorder sees it.
        page.evaluate("() => document.getElementById('message').remove()")
        page.evaluate(SHOW, path + "?remote=1")
        page.wait_for_timeout(1000)
        assert any("evil.example/tracker.gif" in url for url in recorder.left), recorder.left
        assert recorder.dialogs == []
        assert not [m for m in recorder.console if "script executed" in m], recorder.console
    finally:
        context.close()
