"""
The one server of the bad-input sweep (test_bad_input_*.py), shared by its
four modules (package scope: one per xdist worker); on teardown it must
still be alive and well and have kept what it accepted.
"""

from __future__ import annotations

import pytest

from mailnet import config as mailnetConfig
from tests.harness import MailServer
from tests.integration.badinput import KEEPER_MESSAGE, LITERAL_LIMIT, USERS, checkSurvived, smtpDeliver


@pytest.fixture(scope="package")
def mail(tmp_path_factory):
    s = MailServer(tmp_path_factory.mktemp("badinput"), config={
        # plain-port logins so every protocol can be driven in plaintext;
        # no login delay, so failed logins in the sweep cost no time
        "auth": {"allow_plaintext": True, "failure_delay": 0},
        "limits": {"imap_literal_size": LITERAL_LIMIT},
    })
    s.start()
    for name, password in USERS.items():
        s.addUser(name, password)
    s.limits = mailnetConfig.load(s.configPath).limits
    # Accepted before the sweep: must survive it untouched.
    code, text = smtpDeliver(s.port("smtp"), "sender@remote.test", "keeper@example.test", KEEPER_MESSAGE)
    assert code == 250, text
    # Something in alice's INBOX for FETCH, STORE, RETR and DELE.
    for user in ("alice@example.test", "dave@example.test"):
        for i in range(2):
            body = b"Subject: for %s %d\r\n\r\nhello %d\r\n" % (user.encode(), i, i)
            assert smtpDeliver(s.port("smtp"), "sender@remote.test", user, body)[0] == 250
    yield s
    try:
        checkSurvived(s)
    finally:
        s.stop()
