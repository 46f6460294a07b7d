"""The user directory (IUserDirectory): logins and local recipients through
one interface, the users file and an application's cred checker alike."""

import pytest
from twisted.cred import credentials, error
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet import defer, task

from mailnet import auth, config, service
from mailnet.auth import IAuthenticatedUser
from mailnet.store.interfaces import IAccount
from mailnet.store.memory import MemoryStore


def wait(d):
    """The result of an already-fired Deferred (a Failure if it failed)."""
    done = []
    d.addBoth(done.append)
    assert done, "the Deferred has not fired"
    return done[0]


@pytest.fixture
def stock():
    checker = InMemoryUsernamePasswordDatabaseDontUse()
    checker.addUser(b"alice@example.test", b"alice-secret")
    checker.addUser("j\u00f6rg@example.test".encode(), "p\u00e4ss".encode())
    checker.addUser(b"ops@elsewhere.test", b"ops-secret")
    return checker


@pytest.fixture
def users(stock):
    return auth.CheckerUsers(stock, addresses=["Alice@Example.TEST", "j\u00f6rg@example.test"])


def test_checker_users_is_a_user_directory(users):
    assert auth.IUserDirectory.providedBy(users)
    assert users.canonical("ALICE@example.test") == "alice@example.test"
    assert users.exists("alice@example.test") and not users.exists("bob@example.test")
    users.add("bob@example.test")
    assert users.canonical("bob@example.test") == "bob@example.test"
    users.remove("BOB@example.test")
    assert not users.exists("bob@example.test")


def test_stock_checker_gets_bytes(users):
    # twisted.cred's stock checkers compare bytes: str would never match.
    assert wait(users.authenticate("alice@example.test", "alice-secret")) == "alice@example.test"
    assert wait(users.authenticate("j\u00f6rg@example.test", "p\u00e4ss")) == "j\u00f6rg@example.test"
    assert wait(users.authenticate("alice@example.test", "wrong")).check(error.UnauthorizedLogin)
    assert wait(users.authenticate("nobody@example.test", "alice-secret")).check(error.UnauthorizedLogin)
    # Accepted by the checker but not among the addresses: a login, no mailbox.
    assert wait(users.authenticate("ops@elsewhere.test", "ops-secret")) == "ops@elsewhere.test"
    assert not users.exists("ops@elsewhere.test")


def test_portal_logs_in_through_the_directory(users):
    """What every protocol does: portal.login with str credentials."""
    portal = auth.makePortal(MemoryStore(), users)
    _, avatar, _ = wait(portal.login(credentials.UsernamePassword("alice@example.test", "alice-secret"), None, IAuthenticatedUser))
    assert avatar.username == "alice@example.test"
    _, account, _ = wait(portal.login(credentials.UsernamePassword("alice@example.test", "alice-secret"), None, IAccount))
    assert account.username == "alice@example.test"
    failed = wait(portal.login(credentials.UsernamePassword("alice@example.test", "nope"), None, IAccount))
    assert failed.check(error.UnauthorizedLogin)
    # Bytes that are not UTF-8 are a failed login, not a crash.
    failed = wait(portal.login(credentials.UsernamePassword(b"\xff", b"\xfe"), None, IAccount))
    assert failed.check(error.UnauthorizedLogin)


def test_directory_resolves_users_known_only_to_the_application(tmp_path, users):
    aliases = auth.AliasDB(str(tmp_path / "aliases"))
    aliases.add("postmaster@example.test", ["alice@example.test"])
    directory = auth.Directory(["example.test"], users, aliases)
    assert directory.resolve("alice@example.test").local == ["alice@example.test"]
    assert directory.resolve("Alice+news@EXAMPLE.test").local == ["alice@example.test"]
    assert directory.resolve("postmaster@example.test").local == ["alice@example.test"]
    assert directory.resolve("bob@example.test") is None
    assert directory.mayUseSender("alice@example.test", "postmaster@example.test")
    assert not directory.mayUseSender("alice@example.test", "bob@example.test")


def test_users_file_is_a_user_directory(tmp_path):
    users = auth.UserDB(str(tmp_path / "users"), "bcrypt", 0, runInThread=lambda f, *a: defer.maybeDeferred(f, *a))
    users.add("carol@example.test", "pw")
    assert auth.IUserDirectory.providedBy(users)
    assert wait(users.authenticate("Carol@example.test", "pw")) == "carol@example.test"
    assert wait(users.authenticate("carol@example.test", "bad")).check(error.UnauthorizedLogin)
    assert users.canonical("CAROL@example.test") == "carol@example.test"


def test_checker_users_rejects_what_it_cannot_use(stock):
    with pytest.raises(TypeError, match="expected a list of addresses"):
        auth.CheckerUsers(stock, addresses="alice@example.test")

    class OnlyKeys:
        credentialInterfaces = (credentials.ISSHPrivateKey,)

    with pytest.raises(TypeError, match="IUsernamePassword"):
        auth.CheckerUsers([OnlyKeys()], addresses=[])


def makeConf(tmp_path):
    return config.fromDict({"server": {"data_dir": str(tmp_path / "data")}, "domains": {"local": ["example.test"]}})


def test_make_service_takes_a_user_directory(tmp_path, users):
    context = service.MailContext(makeConf(tmp_path), reactor=task.Clock(), store=MemoryStore(), users=users)
    assert context.users is users
    assert context.directory.resolve("alice@example.test").local == ["alice@example.test"]
    _, account, _ = wait(context.portal.login(credentials.UsernamePassword("alice@example.test", "alice-secret"), None, IAccount))
    assert account.username == "alice@example.test"
    with pytest.raises(TypeError, match="IUserDirectory"):
        service.MailContext(makeConf(tmp_path), reactor=task.Clock(), store=MemoryStore(), users=object())
    with pytest.raises(TypeError, match="not both"):
        service.MailContext(makeConf(tmp_path), reactor=task.Clock(), store=MemoryStore(), users=users, checkers=[users.checker])


def test_older_checkers_argument_gets_bytes(tmp_path, stock):
    """checkers=: logins by the checker (given bytes), recipients from the users file."""
    conf = makeConf(tmp_path)
    context = service.MailContext(conf, reactor=task.Clock(), store=MemoryStore(), checkers=[stock])
    _, avatar, _ = wait(context.portal.login(credentials.UsernamePassword("alice@example.test", "alice-secret"), None, IAuthenticatedUser))
    assert avatar.username == "alice@example.test"
    assert context.directory.resolve("alice@example.test") is None
    with open(conf.usersFile, "w") as f:
        f.write("alice@example.test:{PLAIN}unused\n")
    assert context.directory.resolve("alice@example.test").local == ["alice@example.test"]

