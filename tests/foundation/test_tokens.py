"""
App passwords (mailnet/tokens.py) in process: the tokens file, its re-read
when another process changes it, and the users file accepting a user's
token as their password (what IMAP, POP3, SMTP AUTH and HTTP Basic call).
"""

import hashlib
import os

from twisted.cred import error
from twisted.internet import defer

from mailnet import auth
from mailnet.tokens import TokenDB, looksLikeToken, makeToken


def test_tokens_are_random_and_shaped():
    tokens = {makeToken() for _ in range(50)}
    assert len(tokens) == 50 and all(looksLikeToken(t) for t in tokens)
    assert not looksLikeToken("mn_short") and not looksLikeToken("xx_" + "A" * 43)


def test_file_holds_only_hashes_and_is_reread(tmp_path):
    path = str(tmp_path / "users.tokens")
    writer, reader = TokenDB(path), TokenDB(path)
    assert reader.owner(makeToken()) is None  # no file yet
    token = writer.add("Alice@Example.test", "laptop", clock=lambda: 1000)
    assert reader.owner(token) == "alice@example.test"  # another process's change is seen
    assert reader.list("alice@example.test") == [("laptop", "1000")]
    text = open(path).read()
    assert token not in text and hashlib.sha256(token.encode()).hexdigest() in text
    assert os.stat(path).st_mode & 0o777 == 0o600
    writer.revoke("alice@example.test", "laptop")
    assert reader.owner(token) is None


def test_corrupt_lines_are_ignored(tmp_path):
    path = tmp_path / "users.tokens"
    db = TokenDB(str(path))
    token = db.add("a@example.test", "ok")
    path.write_text(path.read_text() + "garbage\nb@example.test:x:nothex:1\n")
    assert db.owner(token) == "a@example.test"
    assert [name for name, _ in db.list("b@example.test")] == []


def _result(d):
    out = []
    d.addBoth(out.append)
    return out[0]


def test_users_file_takes_a_token_as_the_password(tmp_path):
    tokens = TokenDB(str(tmp_path / "users.tokens"))
    users = auth.UserDB(str(tmp_path / "users"), "sha512-crypt", 0, tokens=tokens,
                        runInThread=lambda f, *a: defer.maybeDeferred(f, *a))
    users.add("a@example.test", "secret")
    users.add("b@example.test", "other")
    token = tokens.add("a@example.test", "phone")
    assert _result(users.authenticate("A@example.test", token)) == "a@example.test"
    assert _result(users.authenticate("a@example.test", "secret")) == "a@example.test"
    refused = _result(users.authenticate("b@example.test", token))  # Alice's token is not Bob's password
    assert refused.check(error.UnauthorizedLogin)
    tokens.revoke("a@example.test", "phone")
    assert _result(users.authenticate("a@example.test", token)).check(error.UnauthorizedLogin)
    # A token of a user no longer in the users file opens nothing.
    again = tokens.add("a@example.test", "again")
    users.remove("a@example.test")
    assert _result(users.authenticate("a@example.test", again)).check(error.UnauthorizedLogin)
