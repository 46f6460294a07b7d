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
