"""
Folder-name rules and limits over IMAP with the real server: CREATE and
RENAME answer NO [CANNOT] for wildcards and control or bidi characters,
NO [LIMIT] past [limits] folders / folder_name_length / folder_depth
(RFC 5530).
"""

import imaplib

import pytest

from tests.imap.test_clients import fresh_user


def login(server, user):
    m = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=20)
    m.login(*user)
    m._encoding = "utf-8"
    return m


def create(m, name):
    typ, data = m._simple_command("CREATE", name)
    return typ, m._untagged_response(typ, data, "CREATE")[1][0]


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    from tests.imap.conftest import _server

    s = _server(tmp_path_factory.mktemp("limits"), limits={"folders": 12, "folder_name_length": 40, "folder_depth": 3})
    yield s
    s.stop()


@pytest.mark.parametrize("name", ['"a*b"', '"50%"', '"x&IC4-y"', '"a&IGY-b"', '"&IA8-rtl"'])
def test_bad_characters_cannot(limited, name):
    # &IC4- is U+202E RIGHT-TO-LEFT OVERRIDE, &IGY- U+2066, &IA8- U+200F in modified UTF-7.
    m = login(limited, fresh_user(limited))
    typ, text = create(m, name)
    assert typ == "NO" and text.startswith(b"[CANNOT]"), text
    assert create(m, "Fine")[0] == "OK"
    typ, data = m.rename("Fine", name)
    assert typ == "NO" and data[0].startswith(b"[CANNOT]"), data
    m.logout()


def test_limits(limited):
    m = login(limited, fresh_user(limited))
    typ, text = create(m, "x" * 41)
    assert typ == "NO" and text.startswith(b"[LIMIT]") and b"40" in text, text
    typ, text = create(m, "a/b/c/d")
    assert typ == "NO" and text.startswith(b"[LIMIT]"), text
    typ, data = m.list()
    have = len(data)
    for i in range(12 - have):
        assert create(m, "f%d" % i)[0] == "OK"
    typ, text = create(m, "one-more")
    assert typ == "NO" and text.startswith(b"[LIMIT]") and b"12 folders" in text, text
    assert m.noop()[0] == "OK"
    m.logout()
