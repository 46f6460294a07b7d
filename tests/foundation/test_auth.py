"""Passwords, the users and aliases files, the directory, the cred checker."""

import os

import pytest
from twisted.cred import credentials, error
from twisted.internet import task

from mailnet import auth, passwords
from mailnet.login import AuthThrottle


# SHA-crypt vectors from Drepper's specification (SHA-crypt.txt).
SPEC_VECTORS = [
    ("$6$saltstring", b"Hello world!",
     "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"),
    ("$6$rounds=10000$saltstringsaltstring", b"Hello world!",
     "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."),
    ("$6$rounds=5000$toolongsaltstring", b"This is just a test",
     "$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0"),
    ("$6$rounds=10$roundstoolow", b"the minimum number is still observed",
     "$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbpBYYBaHHrsX."),
    ("$5$saltstring", b"Hello world!", "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"),
    ("$5$rounds=10000$saltstringsaltstring", b"Hello world!",
     "$5$rounds=10000$saltstringsaltst$3xv.VbSHBb41AL9AvLeujZkZRBAwqFMz2.opqey6IcA"),
]


@pytest.mark.parametrize("setting, password, expected", SPEC_VECTORS)
def test_sha_crypt_spec_vectors(setting, password, expected):
    algorithm = "sha512" if setting.startswith("$6$") else "sha256"
    assert passwords.sha_crypt(password, setting, algorithm) == expected


@pytest.mark.parametrize("scheme", ["argon2id", "bcrypt", "sha512-crypt"])
def test_make_and_verify(scheme):
    stored = passwords.make("sécret", scheme)
    assert passwords.verify("sécret", stored)
    assert not passwords.verify("secret", stored)


DOVECOT_HASHES = [
    # doveadm pw -s ... -p password  (formats as Dovecot writes them)
    ("{SHA512-CRYPT}" + passwords.sha_crypt(b"password", "$6$x0Cl6bJ6/rjBXX3U"), "password"),
    ("{BLF-CRYPT}$2y$05$" + "x" * 0, None),
    ("{PLAIN}password", "password"),
    ("{CRYPT}" + passwords.sha_crypt(b"password", "$6$abc"), "password"),
    (passwords.sha_crypt(b"password", "$6$abc"), "password"),  # no scheme: CRYPT
    ("{SSHA256}" + __import__("base64").b64encode(__import__("hashlib").sha256(b"passwordSALT").digest() + b"SALT").decode(), "password"),
]


def test_dovecot_schemes():
    import bcrypt

    blf = "{BLF-CRYPT}" + bcrypt.hashpw(b"password", bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$", 1)
    argon = "{ARGON2ID}" + __import__("argon2").PasswordHasher(time_cost=1, memory_cost=1024).hash("password")
    for stored, password in [h for h in DOVECOT_HASHES if h[1]] + [(blf, "password"), (argon, "password")]:
        assert passwords.verify(password, stored), stored
        assert not passwords.verify("Password", stored), stored


def test_unknown_scheme():
    with pytest.raises(passwords.UnsupportedScheme):
        passwords.verify("x", "{RPA}abc")
    with pytest.raises(passwords.UnsupportedScheme):
        passwords.verify("x", "{ARGON2ID}garbage")


def inline(f, *args):
    """Stands in for deferToThread: runs the hash check at once."""
    from twisted.internet import defer

    return defer.maybeDeferred(f, *args)


@pytest.fixture
def users(tmp_path):
    return auth.UserDB(str(tmp_path / "users"), "bcrypt", cacheSeconds=60, clock=task.Clock(), runInThread=inline)


def result(d):
    out = []
    d.addBoth(out.append)
    return out


def wait(d):
    done = result(d)
    assert done, "not fired"
    return done[0]


def test_users_file_roundtrip_and_reload(users, tmp_path):
    assert users.list() == []
    users.add("Alice@Example.TEST", "pw1")
    assert users.exists("alice@example.test")
    assert users.canonical("ALICE@example.test") == "alice@example.test"
    with open(tmp_path / "users") as f:
        line = f.read()
    assert line.startswith("alice@example.test:{BLF-CRYPT}$2b$")
    assert oct(os.stat(tmp_path / "users").st_mode & 0o777) == "0o600"
    with pytest.raises(ValueError, match="exists already"):
        users.add("alice@example.test", "x")
    # Another process (the CLI) changes the file: seen at once.
    other = auth.UserDB(str(tmp_path / "users"), "bcrypt", 0)
    other.add("bob@example.test", "pw2")
    assert users.exists("bob@example.test")
    other.remove("bob@example.test")
    assert not users.exists("bob@example.test")
    with pytest.raises(KeyError):
        other.remove("bob@example.test")


def test_dovecot_passwd_file_lines_accepted(users, tmp_path):
    crypt = passwords.sha_crypt(b"pw", "$6$salt")
    (tmp_path / "users").write_text(
        "# comment\n\n"
        f"carol@example.test:{{SHA512-CRYPT}}{crypt}:1000:1000::/home/carol::userdb_quota_rule=*:storage=1G\n"
    )
    assert users.exists("carol@example.test")
    assert wait(users.checkPassword("carol@example.test", "pw")) == "carol@example.test"


def test_checker(users):
    users.add("alice@example.test", "right")
    ok = wait(users.requestAvatarId(credentials.UsernamePassword(b"ALICE@example.test", b"right")))
    assert ok == "alice@example.test"
    for name, pw in [("alice@example.test", "wrong"), ("nobody@example.test", "right"), ("alice@example.test", "")]:
        f = wait(users.checkPassword(name, pw))
        assert f.check(error.UnauthorizedLogin)
    # A bad UTF-8 password is a failed login, not a crash.
    assert wait(users.checkPassword("alice@example.test", b"\xff")).check(error.UnauthorizedLogin)


def test_cache_is_dropped_when_password_changes(users, tmp_path):
    users.add("alice@example.test", "one")
    assert wait(users.checkPassword("alice@example.test", "one")) == "alice@example.test"
    # cached now; the admin changes the password in another process
    auth.UserDB(str(tmp_path / "users"), "bcrypt", 0).setPassword("alice@example.test", "two")
    assert wait(users.checkPassword("alice@example.test", "one")).check(error.UnauthorizedLogin)
    assert wait(users.checkPassword("alice@example.test", "two")) == "alice@example.test"


def test_cache_expires(users):
    users.add("alice@example.test", "one")
    wait(users.checkPassword("alice@example.test", "one"))
    calls = []
    users.runInThread = lambda f, *a: calls.append(f) or inline(f, *a)
    assert wait(users.checkPassword("alice@example.test", "one")) == "alice@example.test"
    assert calls == []  # cached: no hash computed
    users.clock.advance(61)
    assert wait(users.checkPassword("alice@example.test", "one")) == "alice@example.test"
    assert len(calls) == 1


@pytest.fixture
def directory(tmp_path):
    users = auth.UserDB(str(tmp_path / "users"), "bcrypt", 0, runInThread=inline)
    aliases = auth.AliasDB(str(tmp_path / "aliases"))
    for name in ["alice@example.test", "bob@example.test", "carol@other.test"]:
        with users.editing() as lines:
            lines.append(f"{name}:{{PLAIN}}x")
    return auth.Directory(["example.test", "Other.Test"], users, aliases)


def test_resolve(directory):
    d = directory
    d.aliases.add("team@example.test", ["alice@example.test", "Bob@example.test", "ext@remote.test"])
    d.aliases.add("loop1@example.test", ["loop2@example.test"])
    d.aliases.add("loop2@example.test", ["loop1@example.test", "alice@example.test"])
    d.aliases.add("postmaster@other.test", ["team@example.test"])
    assert d.resolve("alice@example.test") == auth.Resolution(["alice@example.test"], [])
    assert d.resolve("ALICE@EXAMPLE.TEST") == auth.Resolution(["alice@example.test"], [])
    assert d.resolve("alice+lists@example.test") == auth.Resolution(["alice@example.test"], [])
    assert d.resolve("team@example.test") == auth.Resolution(["alice@example.test", "bob@example.test"], ["ext@remote.test"])
    assert d.resolve("postmaster@other.test").local == ["alice@example.test", "bob@example.test"]
    assert d.resolve("loop1@example.test") == auth.Resolution(["alice@example.test"], [])
    assert d.resolve("nobody@example.test") is None
    assert d.resolve("someone@remote.test") == auth.Resolution([], ["someone@remote.test"])
    d.aliases.add("@example.test", ["bob@example.test"])
    assert d.resolve("nobody@example.test") == auth.Resolution(["bob@example.test"], [])
    assert d.resolve("alice@example.test").local == ["alice@example.test"]  # users before the catch-all


def test_may_use_sender(directory):
    d = directory
    d.aliases.add("sales@example.test", ["alice@example.test"])
    assert d.mayUseSender("alice@example.test", "alice@example.test")
    assert d.mayUseSender("alice@example.test", "Alice+x@example.test")
    assert d.mayUseSender("alice@example.test", "sales@example.test")
    assert not d.mayUseSender("bob@example.test", "sales@example.test")
    assert not d.mayUseSender("bob@example.test", "alice@example.test")
    assert not d.mayUseSender("alice@example.test", "alice@gmail.test")


def test_alias_file_errors(directory):
    with pytest.raises(ValueError):
        directory.aliases.add("no-at-sign", ["alice@example.test"])
    with pytest.raises(ValueError):
        directory.aliases.add("x@example.test", ["not an address"])


def test_throttle():
    clock = task.Clock()
    t = AuthThrottle(clock, baseDelay=1.0, maxDelay=5.0, window=100)
    assert [t.failed("1.2.3.4") for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert t.failed("5.6.7.8") == 1.0
    clock.advance(101)
    assert t.failed("1.2.3.4") == 1.0
    t.succeeded("1.2.3.4")
    assert t.failed("1.2.3.4") == 1.0
