"""
The webmail app in Chromium: log in (and the error when it fails), resume
after a reload, log out; the folder list and the message list; the phone
layout; keyboard help; the CSRF refusal seen from the page.
"""

import json
import time

from tests.webmail.apphelp import ALICE, BOB, deliver, expectOpen, login, message, row, shot, swaks


def test_login_failure_then_success_resume_and_logout(webmail, browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(webmail.url("/"))
    page.wait_for_selector("#login:not([hidden])")
    shot(page, "login")
    page.fill("#login-user", ALICE[0])
    page.fill("#login-password", "wrong")
    page.click("#login-submit")
    page.wait_for_selector("#login-error:has-text('Login failed')")
    assert page.locator("#app").is_hidden()

    page.fill("#login-password", ALICE[1])
    page.click("#login-submit")
    page.wait_for_selector("#app:not([hidden])")
    assert page.locator("#user").text_content() == ALICE[0]
    page.wait_for_selector(".folder[data-role=inbox]")

    # A reload resumes the session (GET /webmail/session with the cookie).
    page.reload()
    page.wait_for_selector("#app:not([hidden])")
    assert page.locator("#login").is_hidden()

    page.click("#logout")
    page.wait_for_selector("#login:not([hidden])")
    page.reload()
    page.wait_for_selector("#login:not([hidden])")
    assert page.locator("#app").is_hidden()
    context.close()


def test_folders_and_list_markers_and_conversations(app, webmail):
    swaks(webmail, "Markers plain", body="plain body")
    time.sleep(1.1)  # receivedAt has whole seconds: the next one is newer
    raw = (b"From: Bob Example <bob@elsewhere.test>\r\nTo: alice@example.test\r\nSubject: Markers attached\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\n"
           b"Content-Type: text/plain\r\n\r\nsee attached\r\n--XX\r\nContent-Type: application/octet-stream\r\n"
           b"Content-Disposition: attachment; filename=data.bin\r\n\r\n0123456789\r\n--XX--\r\n")
    deliver(webmail, raw)
    page = app
    inbox = page.locator(".folder[data-role=inbox]")
    page.wait_for_selector(".row:has-text('Markers attached')")
    for role in ("inbox", "drafts", "sent", "archive", "junk", "trash"):
        assert page.locator(f".folder[data-role={role}]").count() == 1
    # Unread count on the Inbox, unread and attachment markers on the rows, newest first.
    assert int(inbox.locator(".count").text_content()) >= 2
    attached = row(page, "Markers attached")
    assert "unread" in attached.get_attribute("class")
    assert attached.locator(".mark-attachment").text_content() != ""
    assert row(page, "Markers plain").locator(".mark-attachment").text_content() == ""
    subjects = page.locator(".row .subject").all_text_contents()
    assert subjects.index("Markers attached") < subjects.index("Markers plain")
    assert "Bob Example" in attached.locator(".sender").text_content()
    assert "see attached" in attached.locator(".preview").text_content()

    # Conversations: a reply in the same thread collapses onto one row (the newest).
    deliver(webmail, message("Thread start", headers=["Message-ID: <t1@elsewhere.test>"]))
    deliver(webmail, message("Re: Thread start", headers=["Message-ID: <t2@elsewhere.test>",
                                                          "In-Reply-To: <t1@elsewhere.test>", "References: <t1@elsewhere.test>"]))
    page.wait_for_selector(".row:has-text('Re: Thread start')")
    assert page.locator(".row .subject:text-matches('Thread start')").count() == 2
    page.check("#threads")
    page.wait_for_function("() => document.querySelectorAll('.row .subject').length > 0 && "
                           "[...document.querySelectorAll('.row .subject')].filter(n => n.textContent.includes('Thread start')).length == 1")
    page.uncheck("#threads")
    page.wait_for_function("() => [...document.querySelectorAll('.row .subject')].filter(n => n.textContent.includes('Thread start')).length == 2")
    # The reader lists the conversation's messages (Thread/get).
    row(page, "Re: Thread start").click()
    page.wait_for_selector(".thread h3:has-text('In this conversation (2)')")
    page.click(".thread-item a:has-text('Thread start')")
    page.wait_for_selector("#reader-subject:text-is('Thread start')")
    shot(page, "inbox")


def test_phone_layout_and_help_overlay(webmail, browser):
    context = browser.new_context(viewport={"width": 390, "height": 800}, is_mobile=True, has_touch=True)
    page = context.new_page()
    login(page, webmail)
    swaks(webmail, "Phone sized")
    page.wait_for_selector(".row:has-text('Phone sized')")
    assert page.locator("#folders").is_hidden()          # a drawer on a phone
    page.click("#menu-toggle")
    assert page.locator("#folders").is_visible()
    page.click("#menu-toggle")
    row(page, "Phone sized").click()
    page.wait_for_selector("#reader-subject:text-is('Phone sized')")
    assert page.locator("#list-pane").is_hidden()         # one pane at a time
    shot(page, "phone")
    page.go_back()                                         # the back button returns to the list
    page.wait_for_selector("#list-pane:visible")
    page.click("#compose-button")                          # the form takes the screen
    page.wait_for_selector("#compose-to:visible")
    assert page.locator("#list-pane").is_hidden()
    page.click("#discard")
    page.wait_for_selector("#list-pane:visible")
    context.close()


def test_keyboard_help_and_j_k(app, webmail):
    page = app
    for n in range(3):
        swaks(webmail, f"Key {n}")
    page.wait_for_selector(".row:has-text('Key 2')")
    page.keyboard.press("?")
    page.wait_for_selector("#help:not([hidden])")
    assert "Reply all" in page.locator("#help").text_content()
    page.keyboard.press("Escape")
    assert page.locator("#help").is_hidden()
    # j/k follow the list's order (the rows as drawn: several may share one second of receivedAt).
    first, second = page.locator(".row .subject").all_text_contents()[:2]
    page.keyboard.press("j")
    expectOpen(page, first)
    page.keyboard.press("j")
    expectOpen(page, second)
    page.keyboard.press("k")
    expectOpen(page, first)
    assert "/email/" in page.url
    page.go_back()
    expectOpen(page, second)
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "search"


def test_csrf_refused_without_header_from_the_page(app, webmail):
    """A change made with the cookie but without X-CSRF-Token is refused (403), from the page itself."""
    page = app
    answer = page.evaluate("""async () => {
        const body = JSON.stringify({using: ["urn:ietf:params:jmap:core"], methodCalls: [["Core/echo", {}, "0"]]});
        const without = await fetch("/jmap/api/", {method: "POST", headers: {"Content-Type": "application/json"}, body});
        const wrong = await fetch("/jmap/api/", {method: "POST", headers: {"Content-Type": "application/json", "X-CSRF-Token": "nope"}, body});
        return [without.status, await without.text(), wrong.status];
    }""")
    assert answer[0] == 403, answer
    assert json.loads(answer[1])["type"] == "urn:mailnet:csrf"
    assert answer[2] == 403
    # The app's own calls carry it: a change works.
    swaks(webmail, "Flag me")
    row(page, "Flag me").locator(".select").check()
    page.click("#act-flag")
    page.wait_for_selector(".row.flagged:has-text('Flag me')")


def test_other_user_sees_only_their_mail(browser, webmail):
    swaks(webmail, "For bob only", to=BOB[0])
    context = browser.new_context()
    page = context.new_page()
    login(page, webmail, BOB)
    page.wait_for_selector(".row:has-text('For bob only')")
    assert page.locator(".row:has-text('Markers plain')").count() == 0
    context.close()
