"""
The webmail app in Chromium, reading: a message swaks delivered, marked
read on open (seen over IMAP), attachments and save as .eml (the bytes
IMAP serves), HTML in the sandboxed iframe with the remote-images bar, the
hostile corpus (no script, no outside request), live arrival, search, move,
archive, delete, folders.
"""

from tests.http import hostilemail
from tests.webmail.apphelp import (ALICE, Requests, deliver, imap, imapFind, message, openMessage, row, shot,
                                   swaks, waitFor)


def test_read_a_message_swaks_delivered_and_it_is_seen_over_imap(app, webmail):
    page = app
    swaks(webmail, "Lunch on Friday?", body="Shall we meet at noon?\nSee https://example.org/menu for the menu.")
    page.wait_for_selector(".row.unread:has-text('Lunch on Friday?')")
    openMessage(page, "Lunch on Friday?")
    reader = page.locator("#reader")
    assert "Bob Example <bob@elsewhere.test>" in reader.locator(".h-from").text_content()
    assert ALICE[0] in reader.locator(".h-to").text_content()
    text = reader.locator(".text-body")
    assert "Shall we meet at noon?" in text.text_content()
    assert text.locator("a").get_attribute("href") == "https://example.org/menu"
    assert text.locator("a").get_attribute("rel") == "noopener noreferrer"
    page.wait_for_selector(".row:not(.unread):has-text('Lunch on Friday?')")
    shot(page, "reader")
    waitFor(lambda: b"\\Seen" in imapFind(webmail, ALICE, "INBOX", "Lunch on Friday?")[2], 15)
    page.click("#reader-unread")
    page.wait_for_selector(".row.unread:has-text('Lunch on Friday?')")


ATTACHED = (b"From: Bob Example <bob@elsewhere.test>\r\nTo: alice@example.test\r\nSubject: Report attached\r\n"
            b"Message-ID: <report@elsewhere.test>\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=BB\r\n\r\n--BB\r\nContent-Type: text/plain\r\n\r\n"
            b"The report.\r\n--BB\r\nContent-Type: application/pdf; name=report.pdf\r\n"
            b"Content-Disposition: attachment; filename=report.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            b"JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PD4+CmVuZG9iagp0cmFpbGVyCjw8Pj4KJSVFT0YK\r\n--BB--\r\n")


def test_attachment_download_and_save_as_eml_bytes_identical_to_imap(app, webmail):
    page = app
    deliver(webmail, ATTACHED)
    openMessage(page, "Report attached")
    link = page.locator(".attachments a.attachment")
    assert "report.pdf" in link.text_content()
    assert "B" in link.locator(".attachment-size").text_content()
    with page.expect_download() as info:
        link.click()
    data = open(info.value.path(), "rb").read()
    assert data.startswith(b"%PDF-1.4")
    assert info.value.suggested_filename == "report.pdf"

    with page.expect_download() as info:
        page.click("#save-eml")
    eml = open(info.value.path(), "rb").read()
    assert info.value.suggested_filename == "Report attached.eml"
    _, body, _ = imapFind(webmail, ALICE, "INBOX", "Report attached")
    assert eml == body


HTML = (b"From: Bob Example <bob@elsewhere.test>\r\nTo: alice@example.test\r\nSubject: Newsletter\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=AA\r\n\r\n--AA\r\n"
        b"Content-Type: text/plain\r\n\r\nplain version\r\n--AA\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b"<html><body><h1>Big news</h1><p>Hello <b>Alice</b></p>"
        b"<img src=\"http://tracker.invalid/pixel.gif\" alt=\"pixel\"></body></html>\r\n--AA--\r\n")


def test_html_in_sandboxed_iframe_with_remote_images_bar(app, webmail):
    page = app
    requests = Requests(page)
    deliver(webmail, HTML)
    openMessage(page, "Newsletter")
    frame = page.locator("iframe.html-body")
    sandbox = frame.get_attribute("sandbox").split()
    assert "allow-scripts" not in sandbox and "allow-same-origin" not in sandbox
    assert frame.get_attribute("src").startswith("/webmail/html/")
    inner = page.frame_locator("iframe.html-body")
    inner.locator("h1:text('Big news')").wait_for()
    page.wait_for_selector(".remote-bar:has-text('1 remote image')")
    shot(page, "reader-html")
    assert not requests.outside(), requests.outside()
    page.route("http://tracker.invalid/**", lambda route: route.fulfill(status=204))
    page.click("#show-remote")
    waitFor(lambda: "?remote=1" in (frame.get_attribute("src") or ""), 10)


HOSTILE = [
    ("Hostile script", "<p>x</p><script>parent.document.title='PWNED';alert(1)</script>"),
    ("Hostile handler", "<img src=x onerror=\"alert(1)\"><body onload=alert(2)><a href=\"javascript:alert(3)\">go</a>"),
    ("Hostile svg", "<svg><script>alert(1)</script><image href=\"http://evil.invalid/i.png\"/></svg>"),
    ("Hostile css", "<style>@import url(http://evil.invalid/a.css); body{background:url(http://evil.invalid/b.png)}</style>"
                    "<div style=\"background-image:url('http://evil.invalid/c.png')\">css</div>"),
    ("Hostile form", "<form action=\"http://evil.invalid/\"><input name=p><button>go</button></form>"
                     "<meta http-equiv=refresh content=\"0;url=http://evil.invalid/\"><base href=\"http://evil.invalid/\">"),
    ("Hostile data", "<a href=\"data:text/html,<script>alert(1)</script>\">d</a>"
                     "<iframe src=\"http://evil.invalid/f\"></iframe><object data=\"http://evil.invalid/o\"></object>"
                     "<link rel=stylesheet href=\"http://evil.invalid/l.css\"><img srcset=\"http://evil.invalid/s.png 2x\">"),
]


def test_hostile_corpus_runs_no_script_and_fetches_nothing_outside(app, webmail):
    page = app
    requests = Requests(page)
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    for subject, html in HOSTILE:
        raw = (f"From: Bob <bob@elsewhere.test>\r\nTo: alice@example.test\r\nSubject: {subject}\r\n"
               f"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n").encode()
        deliver(webmail, raw)
    # A Subject with markup is text, never markup.
    deliver(webmail, message("<img src=x onerror=alert(9)><b>Markup subject</b>", body="<script>alert(8)</script>"))
    # And the server side's corpus (tests/http/hostile/) as one message, with markup in From and Subject.
    deliver(webmail, hostilemail.hostileMessage(marker=" in the app"), sender="attacker@evil.example")
    console = []
    page.on("console", lambda m: console.append(m.text))
    page.wait_for_selector(".row:has-text('Markup subject')")
    openMessage(page, hostilemail.SUBJECT + " in the app")
    page.frame_locator("iframe.html-body").locator("img[alt=logo]").wait_for(state="attached")
    assert page.locator(".row .sender:has-text('<img src=x onerror=alert(1)>')").count() == 1
    page.wait_for_selector(f".remote-bar:has-text('{hostilemail.REMOTE_COUNT} remote images')")
    assert not any("script executed" in line for line in console), console
    for subject, _ in HOSTILE:
        openMessage(page, subject)
        page.frame_locator("iframe.html-body").locator("body").wait_for(state="attached")
        page.wait_for_timeout(300)
    openMessage(page, "<img src=x onerror=alert(9)><b>Markup subject</b>")
    assert page.locator("#reader img").count() == 0 and page.locator(".row img").count() == 0
    assert "<script>alert(8)</script>" in page.locator(".text-body").text_content()
    page.wait_for_timeout(500)
    assert dialogs == []
    assert "PWNED" not in page.title()
    assert not requests.outside(), requests.outside()


def test_live_arrival_and_unread_count(app, webmail):
    page = app
    page.wait_for_selector(".folder[data-role=inbox]")
    before = page.locator(".folder[data-role=inbox] .count").text_content() if page.locator(".folder[data-role=inbox] .count").count() else "0"
    swaks(webmail, "Arrives while open")
    page.wait_for_selector(".row.unread:has-text('Arrives while open')", timeout=15000)
    waitFor(lambda: page.locator(".folder[data-role=inbox] .count").text_content() == str(int(before) + 1), 10)


def test_search_box(app, webmail):
    page = app
    swaks(webmail, "Quarterly figures", body="numbers")
    swaks(webmail, "Holiday plans", body="beach")
    page.wait_for_selector(".row:has-text('Holiday plans')")
    page.fill("#search", "quarterly")
    page.press("#search", "Enter")
    page.wait_for_selector("#list-title:has-text('Search: quarterly')")
    page.wait_for_function("() => [...document.querySelectorAll('.row .subject')].map(n => n.textContent).join('|') == 'Quarterly figures'")
    assert "#/search/quarterly" in page.url
    openMessage(page, "Quarterly figures")
    page.go_back()
    page.go_back()
    page.wait_for_selector(".row:has-text('Holiday plans')")
    # The text of the body is searched too (JMAP's "text" filter).
    page.fill("#search", "beach")
    page.press("#search", "Enter")
    page.wait_for_function("() => [...document.querySelectorAll('.row .subject')].map(n => n.textContent).join('|') == 'Holiday plans'")
    page.fill("#search", "nothing-matches-this")
    page.press("#search", "Enter")
    page.wait_for_selector(".empty:has-text('No message matches')")


def test_move_archive_junk_delete_and_delete_for_good(app, webmail):
    page = app
    for subject in ("Move me", "Archive me", "Junk me", "Delete me"):
        swaks(webmail, subject)
    page.wait_for_selector(".row:has-text('Delete me')")
    row(page, "Move me").locator(".select").check()
    page.select_option("#move-to", label="Archive")
    page.wait_for_selector(".row:has-text('Move me')", state="detached")
    openMessage(page, "Archive me")
    page.click("#reader-archive")
    page.wait_for_selector(".row:has-text('Archive me')", state="detached")
    row(page, "Junk me").locator(".select").check()
    page.click("#act-junk")
    page.wait_for_selector(".row:has-text('Junk me')", state="detached")
    openMessage(page, "Delete me")
    page.keyboard.press("#")
    page.wait_for_selector(".row:has-text('Delete me')", state="detached")
    imapFind(webmail, ALICE, "Archive", "Move me")
    imapFind(webmail, ALICE, "Archive", "Archive me")
    imapFind(webmail, ALICE, "Junk", "Junk me")
    imapFind(webmail, ALICE, "Trash", "Delete me")
    # In Trash, delete is for good (after a confirmation).
    page.click(".folder[data-role=trash]")
    page.once("dialog", lambda d: d.accept())
    openMessage(page, "Delete me")
    page.click("#reader-delete")
    page.wait_for_selector(".row:has-text('Delete me')", state="detached")

    def gone():
        with imap(webmail) as client:
            client.select_folder("Trash", readonly=True)
            return not client.search(["SUBJECT", "Delete me"])
    waitFor(gone, 15)


def test_folder_create_rename_delete(app, webmail):
    page = app
    page.once("dialog", lambda d: d.accept("Projects"))
    page.click("#folder-new")
    page.wait_for_selector(".folder.current:has-text('Projects')")
    page.once("dialog", lambda d: d.accept("Projects 2027"))
    page.click("#folder-rename")
    page.wait_for_selector(".folder.current:has-text('Projects 2027')")
    with imap(webmail) as client:
        assert any(name == "Projects 2027" for _, _, name in client.list_folders())
    page.once("dialog", lambda d: d.accept())
    page.click("#folder-delete")
    page.wait_for_selector(".folder:has-text('Projects 2027')", state="detached")
    page.wait_for_selector(".folder.current[data-role=inbox]")
    # A refused change is shown with the server's reason: a second "Archive" exists already.
    page.once("dialog", lambda d: d.accept("Archive"))
    page.click("#folder-new")
    page.wait_for_selector(".notice.error:has-text('Creating the folder failed')")


# Counts the Email/query answers the list has taken in: a task after the answer's JSON is read runs
# after the promise callbacks that take it in and draw it.
COUNT_QUERY_ANSWERS = """() => {
  window.__queryAnswers = 0;
  const original = window.fetch;
  window.fetch = async (url, init) => {
    const response = await original(url, init);
    if (init && typeof init.body === "string" && init.body.includes('"Email/query"')) {
      const json = response.json.bind(response);
      response.json = async () => {
        const value = await json();
        setTimeout(() => { window.__queryAnswers++; }, 0);
        return value;
      };
    }
    return response;
  };
}"""


def test_an_older_answer_of_the_list_does_not_undo_a_newer_one(app, webmail):
    # A list refresh answered after a later one (from before a change) used to put the older rows back.
    page = app
    deliver(webmail, message("There before the refresh"))
    page.wait_for_selector(".row:has-text('There before the refresh')")
    page.evaluate(COUNT_QUERY_ANSWERS)
    held = []

    def hold(route):
        if not held and '"Email/query"' in (route.request.post_data or ""):
            held.append((route, route.fetch()))  # answered now, given to the page later
        else:
            route.continue_()

    page.route("**/jmap/api/**", hold)
    page.click(".folder[data-role=inbox]")  # the list asked again: this answer is held
    for _ in range(300):
        if held:
            break
        page.wait_for_timeout(50)  # (the route's handler runs while Playwright is waited on)
    assert held, "the list's Email/query was not sent"
    deliver(webmail, message("Arrived during a refresh"))
    page.wait_for_selector(".row:has-text('Arrived during a refresh')")  # the push's refresh
    before = page.evaluate("() => window.__queryAnswers")
    route, response = held[0]
    route.fulfill(response=response)
    page.wait_for_function(f"() => window.__queryAnswers > {before}")
    page.unroute("**/jmap/api/**")
    assert row(page, "Arrived during a refresh").count() == 1
