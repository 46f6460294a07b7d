"""
The webmail app in Chromium, rich text and settings: an HTML message
written with the toolbar arrives as multipart/alternative (checked over
IMAP), cleaned by the server; a reply to HTML mail quotes its HTML, a
forward carries it; an
identity edited in Settings signs the next message (and sets its name and
Reply-To); the "compose in plain text" setting is kept on the server; the
vacation responder form; a message's <style> block keeps its look while
hostile CSS and HTML fetch nothing (a local HTTP server counts requests)
and run nothing.
"""

import base64
import email
import email.policy
import http.server
import json
import threading
import urllib.parse
import urllib.request

import pytest

from tests.webmail.apphelp import ALICE, BOB, Requests, deliver, imapFind, login, openMessage, setPlainText, shot


def parse(raw):
    return email.message_from_bytes(raw, policy=email.policy.default)


def body(message, kind):
    return message.get_body((kind,)).get_content().replace("\r\n", "\n")


def send(page):
    page.click("#send")
    page.wait_for_selector("#compose", state="hidden")


class Counter:
    """A local HTTP server that counts the requests it gets (the 'remote' content of hostile mail)."""

    def __init__(self):
        hits = self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def counter():
    c = Counter()
    yield c
    c.close()


def htmlMessage(subject, html, text="(text version)", sender="Bob Example <bob@elsewhere.test>", messageId=None):
    boundary = "b0undary"
    lines = [f"From: {sender}", f"To: {ALICE[0]}", f"Subject: {subject}", "Date: Thu, 03 Dec 2026 10:00:00 +0000",
             f"Message-ID: <{messageId or subject.replace(' ', '.')}@elsewhere.test>", "MIME-Version: 1.0",
             "Reply-To: Bob Local <bob@example.test>",
             f'Content-Type: multipart/alternative; boundary="{boundary}"', "",
             f"--{boundary}", "Content-Type: text/plain; charset=utf-8", "", text,
             f"--{boundary}", "Content-Type: text/html; charset=utf-8", "", html, f"--{boundary}--", ""]
    return "\r\n".join(lines).replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def editor(page):
    page.wait_for_selector("#compose-editor")
    return page.locator("#compose-editor")


def test_html_compose_sends_multipart_alternative_cleaned(app, webmail, counter):
    page = app
    setPlainText(page, False)
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.click("#compose-button")
    area = editor(page)
    page.fill("#compose-to", BOB[0])
    page.fill("#compose-subject", "Rich hello")
    area.click()
    page.keyboard.press("Control+Home")
    page.keyboard.type("Hello ")
    page.click("#editor-bold")
    page.keyboard.type("bold")
    page.click("#editor-bold")
    page.keyboard.type(" and ")
    page.click("#editor-italic")
    page.keyboard.type("italic")
    page.click("#editor-italic")
    page.keyboard.press("Enter")
    page.click("#editor-ul")
    page.keyboard.type("first item")
    page.keyboard.press("Enter")
    page.keyboard.type("second item")
    page.keyboard.press("Enter")
    page.keyboard.press("Enter")
    page.keyboard.type("our site")
    for _ in range(len("our site")):
        page.keyboard.press("Shift+ArrowLeft")
    page.click("#editor-link")
    page.fill("#editor-link-url", "https://example.test/page")
    page.press("#editor-link-url", "Enter")
    shot(page, "compose-html")
    # What a paste or a bug could put in the editor: the app writes out only allowed elements and the server
    # cleans again (tests/http/test_webmail_compose.py checks that layer alone), and the page's CSP must not
    # let any of it run or fetch anything meanwhile.
    page.evaluate("""(url) => {
        const area = document.getElementById("compose-editor");
        const p = document.createElement("p");
        p.textContent = "tail";
        p.setAttribute("onclick", "alert(1)");
        const bad = document.createElement("a");
        bad.setAttribute("href", "javascript:alert(2)");
        bad.textContent = "bad link";
        const img = document.createElement("img");
        img.setAttribute("src", url + "/pixel.png");
        img.setAttribute("onerror", "alert(3)");
        const script = document.createElement("script");
        script.textContent = "alert(4)";
        p.append(bad, img, script);
        area.append(p);
        area.dispatchEvent(new Event("input"));
    }""", counter.url)
    send(page)
    _, raw, _ = imapFind(webmail, BOB, "INBOX", "Rich hello")
    got = parse(raw)
    assert got.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in got.iter_parts()] == ["text/plain", "text/html"]
    text = body(got, "plain")
    html = body(got, "html")
    assert "Hello bold and italic" in text
    assert "- first item\n- second item" in text
    assert "our site <https://example.test/page>" in text
    assert "<b>bold</b>" in html and "<i>italic</i>" in html
    assert "<ul><li>first item</li><li>second item</li></ul>" in html
    assert 'href="https://example.test/page"' in html
    lowered = html.lower()
    for bad in ("onclick", "onerror", "javascript:", "<script", "alert(4)"):
        assert bad not in lowered, bad
    assert "bad link" in html and "tail" in html
    assert dialogs == [] and counter.hits == []  # the page's CSP kept the image from loading
    # The sent copy in Sent keeps the HTML too.
    _, sentRaw, _ = imapFind(webmail, ALICE, "Sent", "Rich hello")
    assert "<b>bold</b>" in parse(sentRaw).get_body(("html",)).get_content()


def test_reply_to_html_mail_quotes_its_html(app, webmail, counter):
    page = app
    setPlainText(page, False)
    requests = Requests(page)
    deliver(webmail, htmlMessage("Styled news", f'<html><body><p>Dear Alice,</p><p><b>Important</b> '
                                 f'<a href="https://example.test/more">read more</a></p>'
                                 f'<img src="{counter.url}/track.png"><script>alert(1)</script></body></html>'))
    openMessage(page, "Styled news")
    page.click("#reply")
    area = editor(page)
    quote = area.locator("blockquote")
    quote.locator("b", has_text="Important").wait_for()
    assert quote.locator("a[href='https://example.test/more']").count() == 1
    assert area.locator("script, img").count() == 0
    assert "wrote:" in area.inner_text()
    page.keyboard.press("Control+Home")
    page.keyboard.type("Thanks, noted.")
    send(page)
    _, raw, _ = imapFind(webmail, BOB, "INBOX", "Re: Styled news")
    got = parse(raw)
    html = body(got, "html")
    text = body(got, "plain")
    assert html.index("Thanks, noted.") < html.index("<blockquote") < html.index("<b>Important</b>")
    assert text.startswith("Thanks, noted.")
    assert "> Dear Alice," in text and "> Important read more <https://example.test/more>" in text
    assert got["In-Reply-To"] == "<Styled.news@elsewhere.test>"
    # Forwarded inline, the HTML comes along under the forward header.
    openMessage(page, "Styled news")
    page.click("#forward")
    area = editor(page)
    area.locator("b", has_text="Important").wait_for()
    page.fill("#compose-to", BOB[0])
    send(page)
    _, raw, _ = imapFind(webmail, BOB, "INBOX", "Fwd: Styled news")
    got = parse(raw)
    html = body(got, "html")
    assert html.index("Forwarded message") < html.index("<b>Important</b>")
    assert "Subject: Styled news" in body(got, "plain") and "Important read more" in body(got, "plain")
    assert "<script" not in html.lower() and counter.url not in html
    assert counter.hits == [] and requests.outside() == []


def test_identity_edited_in_settings_signs_the_next_message(app, webmail):
    page = app
    setPlainText(page, False)
    page.click("#settings-button")
    form = page.locator(f".identity-form[data-email='{ALICE[0]}']")
    form.wait_for()
    form.locator(".identity-name").fill("Alice Liddell")
    form.locator(".identity-reply-to").fill("Alice Replies <alice@example.test>")
    form.locator(".identity-text-signature").fill("Alice L.\nWonderland")
    form.locator(".identity-html-signature").click()
    page.keyboard.type("Alice ")
    form.locator(".editor-bold").click()
    page.keyboard.type("Liddell")
    form.locator(".save-identity").click()
    page.wait_for_selector(".notice:has-text('Identity alice@example.test saved')")
    shot(page, "settings")
    page.click("#compose-button")
    area = editor(page)
    area.locator(".signature b", has_text="Liddell").wait_for()
    page.fill("#compose-to", BOB[0])
    page.fill("#compose-subject", "Signed rich")
    area.click()
    page.keyboard.press("Control+Home")
    page.keyboard.type("Body first.")
    send(page)
    _, raw, _ = imapFind(webmail, BOB, "INBOX", "Signed rich")
    got = parse(raw)
    assert got["From"] == "Alice Liddell <alice@example.test>"
    assert got["Reply-To"] == "Alice Replies <alice@example.test>"
    text = body(got, "plain")
    assert text.startswith("Body first.") and "-- \nAlice Liddell" in text
    assert "<b>Liddell</b>" in body(got, "html")

    # In plain text, the text signature, after "-- ".
    setPlainText(page, True)
    page.reload()
    page.wait_for_selector("#app:not([hidden])")
    page.click("#compose-button")
    page.wait_for_selector("#compose-body")
    assert page.input_value("#compose-body") == "\n\n-- \nAlice L.\nWonderland\n"
    page.fill("#compose-to", BOB[0])
    page.fill("#compose-subject", "Signed plain")
    page.locator("#compose-body").press("Control+Home")
    page.keyboard.type("Plain body.")
    send(page)
    _, raw, _ = imapFind(webmail, BOB, "INBOX", "Signed plain")
    got = parse(raw)
    assert got.get_content_type() == "text/plain"
    assert got.get_content().replace("\r\n", "\n") == "Plain body.\n\n-- \nAlice L.\nWonderland\n"
    # Put alice back as she was for the other tests.
    page.click("#settings-button")
    form.wait_for()
    form.locator(".identity-name").fill("")
    form.locator(".identity-reply-to").fill("")
    form.locator(".identity-text-signature").fill("")
    form.locator(".identity-html-signature").evaluate("e => { while (e.firstChild) e.firstChild.remove(); }")
    form.locator(".save-identity").click()
    page.wait_for_selector(".notice:has-text('Identity alice@example.test saved')")


def test_plain_text_setting_is_kept_per_user(browser, webmail):
    context = browser.new_context()
    page = context.new_page()
    try:
        login(page, webmail)
        setPlainText(page, False)
        page.click("#settings-button")
        page.check("#setting-plain-text")
        page.wait_for_selector(".notice:has-text('Settings saved')")
        context.close()
        # Another browser: the setting came from the server.
        context = browser.new_context()
        page = context.new_page()
        login(page, webmail)
        assert page.evaluate("async () => (await (await fetch('/webmail/settings')).json()).plainText") is True
        page.click("#compose-button")
        page.wait_for_selector("#compose-body")
        assert page.locator("#compose-editor").count() == 0
        # "Rich text" switches this message only.
        page.fill("#compose-body", "line one\nline two")
        page.click("#switch-mode")
        editor(page).locator("div", has_text="line two").wait_for()
        page.click("#discard")
        page.click("#settings-button")
        page.uncheck("#setting-plain-text")
        page.wait_for_selector(".notice:has-text('Settings saved')")
        assert page.evaluate("async () => (await (await fetch('/webmail/settings')).json()).plainText") is False
    finally:
        context.close()


def test_vacation_responder_form(app, webmail):
    page = app
    page.click("#settings-button")
    page.wait_for_selector("#vacation-form")
    page.check("#vacation-enabled")
    page.fill("#vacation-from", "2026-12-20T09:00")
    page.fill("#vacation-to", "2026-12-19T09:00")
    page.fill("#vacation-subject", "Away")
    page.fill("#vacation-text", "I am away until January.")
    page.click("#vacation-save")
    page.wait_for_selector(".notice.error:has-text('end date is before the start date')")
    page.fill("#vacation-to", "2027-01-04T09:00")
    page.click("#vacation-save")
    page.wait_for_selector(".notice:has-text('Vacation responder on')")
    # What the server keeps, through JMAP with Basic auth (not the app's own code).
    headers = {"Authorization": "Basic " + base64.b64encode(":".join(ALICE).encode()).decode(),
               "Content-Type": "application/json"}
    session = json.load(urllib.request.urlopen(urllib.request.Request(webmail.url("/.well-known/jmap"), headers=headers),
                                               timeout=30))
    accountId = session["primaryAccounts"]["urn:ietf:params:jmap:vacationresponse"]
    body = json.dumps({"using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:vacationresponse"],
                       "methodCalls": [["VacationResponse/get", {"accountId": accountId}, "v"]]}).encode()
    apiUrl = webmail.url(urllib.parse.urlparse(session["apiUrl"]).path)
    answer = json.load(urllib.request.urlopen(urllib.request.Request(apiUrl, data=body, headers=headers), timeout=30))
    [v] = answer["methodResponses"][0][1]["list"]
    assert v["isEnabled"] is True and v["subject"] == "Away" and v["textBody"] == "I am away until January."
    assert v["fromDate"].endswith("Z") and v["toDate"] > v["fromDate"]
    # The form shows it again after a reload; then off.
    page.reload()
    page.wait_for_selector("#vacation-form")
    assert page.is_checked("#vacation-enabled") and page.input_value("#vacation-subject") == "Away"
    page.uncheck("#vacation-enabled")
    page.click("#vacation-save")
    page.wait_for_selector(".notice:has-text('Vacation responder saved (off)')")


HOSTILE_STYLE = """<html><head>
<style>@import url({url}/import.css);
.brand {{ color: rgb(200, 0, 0); font-weight: bold; background: url({url}/bg.png) }}
.overlay {{ position: fixed; top: 0; left: 0; width: 100%; height: 100% }}
body {{ background-image: url({url}/body.png) }}
@font-face {{ font-family: evil; src: url({url}/font.woff) }}
p {{ font-family: evil }}
</style>
<style>.brand {{ background: u\\72 l({url}/escaped.png) }}</style>
<link rel="stylesheet" href="{url}/link.css">
</head><body>
<p class="brand">Brand news</p>
<div class="overlay">overlay</div>
<div style="background-image: url({url}/inline.png); color: rgb(0, 0, 200)" class="inline">inline</div>
<svg><image href="{url}/svg.png"/></svg>
<img src="x" onerror="alert(1)">
</body></html>"""


def test_style_blocks_keep_the_look_and_hostile_css_fetches_nothing(app, webmail, counter):
    page = app
    requests = Requests(page)
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    deliver(webmail, htmlMessage("Styled hostile", HOSTILE_STYLE.format(url=counter.url)))
    openMessage(page, "Styled hostile")
    frame = page.frame_locator("iframe.html-body")
    brand = frame.locator("p.brand")
    brand.wait_for()
    # The harmless part of the <style> block shows: the look is kept.
    assert brand.evaluate("e => getComputedStyle(e).color") == "rgb(200, 0, 0)"
    assert brand.evaluate("e => getComputedStyle(e).fontWeight") == "700"
    assert frame.locator(".inline").evaluate("e => getComputedStyle(e).color") == "rgb(0, 0, 200)"
    # No overlay over the frame, no image, font or style sheet fetched.
    assert frame.locator(".overlay").evaluate("e => getComputedStyle(e).position") == "static"
    page.wait_for_timeout(500)  # give any fetch its chance (the assertion is that none happened)
    shot(page, "reader-styled")
    assert counter.hits == [] and requests.outside() == [] and dialogs == []
    assert not [u for u in requests.urls if counter.url in u]


def test_rich_draft_keeps_its_html_after_a_reload(app, webmail):
    page = app
    setPlainText(page, False)
    page.click("#compose-button")
    area = editor(page)
    page.fill("#compose-subject", "Rich draft")
    area.click()
    page.keyboard.press("Control+Home")
    page.keyboard.type("Draft with ")
    page.click("#editor-bold")
    page.keyboard.type("weight")
    page.click("#save-draft")
    page.wait_for_selector("#compose-status:has-text('Draft saved')")
    page.wait_for_function("() => /^#\\/compose\\/./.test(location.hash)")
    _, raw, flags = imapFind(webmail, ALICE, "Drafts", "Rich draft")
    got = parse(raw)
    assert got.get_content_type() == "multipart/alternative" and "<b>weight</b>" in body(got, "html")
    page.reload()
    page.wait_for_selector("#app:not([hidden])")
    editor(page).locator("b", has_text="weight").wait_for()
    assert "Draft with weight" in page.locator("#compose-editor").inner_text()
    page.click("#discard")


def test_changing_the_from_identity_swaps_the_signature(browser, webmail):
    webmail.addAlias("bob.work@example.test", BOB[0])
    context = browser.new_context()
    page = context.new_page()
    try:
        login(page, webmail, BOB)
        setPlainText(page, False)
        page.click("#settings-button")
        signatures = {BOB[0]: "Bob at home", "bob.work@example.test": "Bob at work"}
        for address, signature in signatures.items():
            form = page.locator(f".identity-form[data-email='{address}']")
            form.locator(".identity-text-signature").fill(signature)
            form.locator(".save-identity").click()
            page.wait_for_selector(f".notice:has-text('Identity {address} saved')")
        page.click("#compose-button")
        area = editor(page)
        first = page.eval_on_selector("#compose-from", "s => s.selectedOptions[0].textContent")
        other = [a for a in signatures if a != first][0]
        area.locator(".signature", has_text=signatures[first]).wait_for()
        page.select_option("#compose-from", label=other)
        area.locator(".signature", has_text=signatures[other]).wait_for()
        assert signatures[first] not in area.inner_text()
        page.click("#discard")
        setPlainText(page, True)
        page.reload()
        page.wait_for_selector("#app:not([hidden])")
        page.click("#compose-button")
        page.wait_for_selector("#compose-body")
        assert page.input_value("#compose-body") == f"\n\n-- \n{signatures[first]}\n"
        page.select_option("#compose-from", label=other)
        assert page.input_value("#compose-body") == f"\n\n-- \n{signatures[other]}\n"
        page.click("#discard")
    finally:
        context.close()
