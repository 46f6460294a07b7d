"""
IMAP QUOTA (RFC 9208) and STATUS=SIZE (RFC 8438) with imapclient against
the real server: GETQUOTAROOT, GETQUOTA, SETQUOTA refused, APPEND and COPY
over the quota answered NO [OVERQUOTA] with nothing stored, a MOVE allowed.
"""

from __future__ import annotations

import imapclient
import pytest
from imapclient.exceptions import IMAPClientError

from tests.ops.quota_helpers import QUOTA_PW, QUOTA_USER, message, quotaServer


def _login(server, user=QUOTA_USER, password=QUOTA_PW):
    c = imapclient.IMAPClient("127.0.0.1", port=server.port("imap"), ssl=False, timeout=30)
    c.login(user, password)
    return c


@pytest.fixture
def server(make_server):
    return quotaServer(make_server, storage="4K", messages=3,
                       extra={"auth": {"allow_plaintext": True}})


def test_quota_commands_append_copy_and_status_size(server):
    c = _login(server)
    try:
        caps = c.capabilities()
        assert b"QUOTA" in caps and b"QUOTA=RES-STORAGE" in caps and b"QUOTA=RES-MESSAGE" in caps
        assert b"STATUS=SIZE" in caps
        roots, quotas = c.get_quota_root("INBOX")
        assert roots.mailbox == "INBOX" and roots.quota_roots == [""]
        assert {(q.resource, q.usage, q.limit) for q in quotas} == {("STORAGE", 0, 4), ("MESSAGE", 0, 3)}
        first = message(1500, "one")
        c.append("INBOX", first)
        [q] = [q for q in c._get_quota("") if q.resource == "STORAGE"]  # raw GETQUOTA ""
        assert q.usage == 2 and q.limit == 4  # 1500 bytes: 2 units of 1024 (rounded up)
        status = c.folder_status("INBOX", [b"SIZE", b"MESSAGES"])
        assert status[b"SIZE"] == 1500 and status[b"MESSAGES"] == 1
        # Past the quota (4096 bytes, no grace): NO [OVERQUOTA], nothing stored.
        with pytest.raises(IMAPClientError) as e:
            c.append("INBOX", message(3000, "two"))
        assert "OVERQUOTA" in str(e.value)
        assert c.folder_status("INBOX", [b"MESSAGES"])[b"MESSAGES"] == 1
        c.append("Archive", message(1500, "three"))
        c.select_folder("INBOX")
        # COPY would take 1500 more bytes to 4500: refused; MOVE changes nothing.
        with pytest.raises(IMAPClientError) as e:
            c.copy([1], "Archive")
        assert "OVERQUOTA" in str(e.value)
        c.move([1], "Trash")
        assert c.folder_status("Trash", [b"MESSAGES", b"SIZE"]) == {b"MESSAGES": 1, b"SIZE": 1500}
        # The message count: 2 of 3, then 3 of 3, then refused.
        c.append("INBOX", message(100, "four"))
        with pytest.raises(IMAPClientError) as e:
            c.append("INBOX", message(100, "five"))
        assert "OVERQUOTA" in str(e.value)
        [m] = [q for q in c.get_quota("Trash") if q.resource == "MESSAGE"]  # via GETQUOTAROOT
        assert (m.usage, m.limit) == (3, 3)
        # Limits are the administrator's; an unknown root is NO.
        with pytest.raises(IMAPClientError):
            c.set_quota([imapclient.imapclient.Quota("", "STORAGE", 0, 100000)])
        with pytest.raises(IMAPClientError):
            c._get_quota("user.other")
        with pytest.raises(IMAPClientError):
            c.get_quota_root("Nope")
    finally:
        c.logout()


def test_user_without_limits_has_no_quota_root(server):
    c = _login(server, "alice@example.test", "alice-pw")
    try:
        roots, quotas = c.get_quota_root("INBOX")
        assert roots.quota_roots == [] and quotas == []
        c.append("INBOX", message(9000, "big"))  # no limits: taken
    finally:
        c.logout()


def test_idle_sessions_gauge(server):
    from tests.ops.quota_helpers import waitFor
    from tests.ops.test_metrics_e2e import scrape, value

    c = _login(server)
    try:
        c.select_folder("INBOX")
        assert value(scrape(server), "mailnet_imap_idle_sessions") == 0
        c.idle()
        waitFor(lambda: value(scrape(server), "mailnet_imap_idle_sessions") == 1, what="the gauge at 1")
        c.idle_done()
        waitFor(lambda: value(scrape(server), "mailnet_imap_idle_sessions") == 0, what="the gauge at 0")
    finally:
        c.logout()
