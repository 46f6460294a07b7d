"""
Shared Playwright fixtures for the webmail's browser tests: Debian's
Chromium (/usr/bin/chromium, from .ci/apt-packages), never a browser that
Playwright downloads.  ``browser`` overrides pytest-playwright's, so its
``context`` and ``page`` fixtures use this one.
"""

import os

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def browser(playwright):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is not installed (Debian package chromium, .ci/apt-packages)")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


# The app's fixtures (tests/webmail/test_app_*.py; helpers in apphelp.py).

WEBMAIL_CONFIG = {
    # Small enough that a test can upload past it (the refusal shown in the page).
    "http": {"max_size_upload": 200_000},
    # Short, so that the undo test is quick; long enough to click "Undo" on a loaded machine.
    "jmap": {"submission_hold": 4.0},
}


@pytest.fixture(scope="session")
def webmail(tmp_path_factory):
    """
    A real server with alice and bob (tests/conftest.py's users), one for the
    app's tests of a session (each test uses subjects of its own): starting
    mailnet is most of a browser test's time on a loaded machine.
    """
    from tests.conftest import USERS
    from tests.harness import MailServer

    server = MailServer(tmp_path_factory.mktemp("webmail"), config=WEBMAIL_CONFIG)
    server.start()
    for name, password in USERS.items():
        server.addUser(name, password)
    yield server
    server.stop()


@pytest.fixture
def app(browser, webmail):
    """A page logged in as alice (a fresh browser context); fails the test on a script error in the page."""
    from tests.webmail.apphelp import login

    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(error))
    login(page, webmail)
    yield page
    context.close()
    assert not errors, errors
