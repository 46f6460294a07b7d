"""
The HTML a webmail user writes (mailnet/http/htmltext.py: cleaned for
sending, its text/plain alternative) and the endpoints around it, in
process: /webmail/compose-html and /webmail/settings (CSRF, limits, bad
input, the settings kept on disk).
"""

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer

from mailnet.http import htmltext
from mailnet.http.userdata import JSONUserData
from tests.http.inprocess import HTTP
from tests.http.test_sanitize import CORPUS, PIECES, assertSafe
from tests.http.test_webmail_inprocess import JSON, loggedIn


@pytest.fixture
def http(tmp_path):
    return HTTP(tmp_path)


def test_outgoing_html_is_cleaned():
    cleaned = htmltext.cleanOutgoing(
        '<div onclick="x()">Hi <b>there</b><script>alert(1)</script></div><a href="javascript:alert(2)">bad</a>'
        '<a href="https://ok.example/">ok</a><img src="http://ok.example/i.png" onerror="alert(3)">'
        '<form action="https://evil.example/"><input name=a></form><p style="color: red; position: fixed">red</p>'
        '<iframe src="https://evil.example/"></iframe><style>p{}</style>')
    assert cleaned == ('<div>Hi <b>there</b></div><a rel="noopener noreferrer">bad</a>'
                       '<a href="https://ok.example/" rel="noopener noreferrer">ok</a><img src="http://ok.example/i.png">'
                       '<p style="color: red">red</p>')


@pytest.mark.parametrize("html, text", [
    ("<div>one</div><div>two</div>", "one\ntwo\n"),
    ("<div>a<br>b</div><div><br></div><div>c</div>", "a\nb\n\nc\n"),
    ("<ul><li>x</li><li>y</li></ul><ol><li>p</li><li>q</li></ol>", "- x\n- y\n1. p\n2. q\n"),
    ("<p>see <a href='https://e.test/a'>the page</a> or <a href='https://e.test/b'>https://e.test/b</a></p>",
     "see the page <https://e.test/a> or https://e.test/b\n"),
    ("<p><a href='mailto:a@e.test'>a@e.test</a></p>", "a@e.test\n"),
    ("<div>On Monday, B wrote:</div><blockquote><div>hello</div><blockquote>older</blockquote></blockquote>",
     "On Monday, B wrote:\n> hello\n>> older\n"),
    ("<pre>  keep\n    this</pre>", "  keep\n    this\n"),
    ("<div>body</div><div class=signature><div>-- </div><div>Alice</div></div>", "body\n-- \nAlice\n"),
    ("<p>a   lot\n of    space</p>", "a lot of space\n"),
    ("<p>x &amp; y &lt;z&gt;</p>", "x & y <z>\n"),
    ("", ""),
])
def test_text_alternative(html, text):
    assert htmltext.toText(htmltext.cleanOutgoing(html)) == text


def composeHTML(http, body, cookie, csrf=None, contentType=JSON):
    headers = {**contentType, b"cookie": cookie}
    if csrf:
        headers[b"x-csrf-token"] = csrf
    return http.request(b"POST", b"/webmail/compose-html", body, headers, auth=False)


def test_compose_html_cleans_and_gives_the_text(http):
    cookie, csrf = loggedIn(http)
    body = json.dumps({"html": "<b>Hi</b><img src=x onerror=alert(1)><ul><li>one</li></ul>"}).encode()
    r = composeHTML(http, body, cookie, csrf)
    assert r.status == 200, r.body
    assert r.json() == {"html": "<b>Hi</b><img><ul><li>one</li></ul>", "text": "Hi\n- one\n"}


def test_compose_html_refusals(http):
    cookie, csrf = loggedIn(http)
    ok = json.dumps({"html": "<b>x</b>"}).encode()
    r = composeHTML(http, ok, cookie)
    assert r.status == 403 and r.json()["type"] == "urn:mailnet:csrf"
    for bad in (b"{}", b'{"html": 3}', b"[1]", b"\xff", b"not json"):
        r = composeHTML(http, bad, cookie, csrf)
        assert r.status == 400 and "html" in r.json()["detail"], bad
    r = composeHTML(http, ok, cookie, csrf, {b"content-type": b"text/plain"})
    assert r.status == 400
    big = json.dumps({"html": "x" * (1024 * 1024 + 1)}).encode()
    r = composeHTML(http, big, cookie, csrf)
    assert r.status == 413 and "compose_html_max" in r.json()["detail"]
    assert http.request(b"GET", b"/webmail/compose-html", headers={b"cookie": cookie}, auth=False).status == 405
    assert composeHTML(http, ok, b"mailnet_session=nope", csrf).status == 401


def test_settings_kept_per_user_on_disk(http, tmp_path):
    http.service.webmail.userData = JSONUserData(str(tmp_path / "jmap"), runInThread=defer.maybeDeferred)
    cookie, csrf = loggedIn(http)
    headers = {b"cookie": cookie, b"x-csrf-token": csrf, **JSON}
    r = http.request(b"GET", b"/webmail/settings", headers={b"cookie": cookie}, auth=False)
    assert r.status == 200 and r.json() == {"plainText": False}
    r = http.request(b"PUT", b"/webmail/settings", b'{"plainText": true}', {b"cookie": cookie, **JSON}, auth=False)
    assert r.status == 403  # no token
    for bad in (b'{"plainText": 1}', b'{"other": true}', b"{}", b"[]", b"x"):
        r = http.request(b"PUT", b"/webmail/settings", bad, headers, auth=False)
        assert r.status == 400 and "plainText (bool)" in r.json()["detail"], bad
    r = http.request(b"PUT", b"/webmail/settings", b'{"plainText": true}', headers, auth=False)
    assert r.status == 200 and r.json() == {"plainText": True}
    [path] = [os.path.join(d, f) for d, _, files in os.walk(tmp_path / "jmap") for f in files if f == "webmail.json"]
    with open(path) as f:
        assert json.load(f) == {"plainText": True}
    r = http.request(b"GET", b"/webmail/settings", headers={b"cookie": cookie}, auth=False)
    assert r.json() == {"plainText": True}
    # Basic auth (a script, not the app) reads them too; bob has his own.
    assert http.request(b"GET", b"/webmail/settings").json() == {"plainText": True}


def test_settings_without_a_user_data_store(http):
    cookie, csrf = loggedIn(http)
    assert http.request(b"GET", b"/webmail/settings", headers={b"cookie": cookie}, auth=False).json() == {"plainText": False}
    r = http.request(b"PUT", b"/webmail/settings", b'{"plainText": true}',
                     {b"cookie": cookie, b"x-csrf-token": csrf, **JSON}, auth=False)
    assert r.status == 403


def assertSafeOutgoing(cleaned):
    # sanitize.py's rules for what is shown, but for links: an outgoing message does not force a new tab.
    assert "target=" not in cleaned
    assertSafe(cleaned.replace(' rel="noopener noreferrer"', ' rel="noopener noreferrer" target="_blank"'),
               remote=True, corpus=False)


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_the_hostile_corpus_written_in_the_editor_is_made_harmless(path):
    cleaned = htmltext.cleanOutgoing(path.read_text())
    assertSafeOutgoing(cleaned)
    for needle in ("javascript:", "vbscript:", "data:text/html"):
        assert needle not in cleaned.lower()
    htmltext.toText(cleaned)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(PIECES + ["<ul>", "<ol>", "<li>", "<blockquote>", "</blockquote>", "<pre>", "<br>"]),
                max_size=40))
def test_arbitrary_markup_is_cleaned_and_has_a_text(pieces):
    cleaned = htmltext.cleanOutgoing("".join(pieces))
    assertSafeOutgoing(cleaned)
    assert isinstance(htmltext.toText(cleaned), str)
