"""
Shared fixtures.

``server``: a running mailnet (real process, real ports on 127.0.0.1) for one
test module, with ``alice@example.test`` / ``alice-pw`` and
``bob@example.test`` / ``bob-pw``.  Tests that change server state in ways
other tests would notice (kill -9, config) make their own ``MailServer``.
"""

import pytest

from tests.harness import MailServer

USERS = {"alice@example.test": "alice-pw", "bob@example.test": "bob-pw"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = MailServer(tmp_path_factory.mktemp("mailnet"))
    s.start()
    for name, password in USERS.items():
        s.addUser(name, password)
    yield s
    s.stop()


@pytest.fixture
def make_server(tmp_path):
    """Factory for private servers: ``make_server(config={...})``; stopped at teardown."""
    made = []

    def make(config=None, start=True, directory=None):
        s = MailServer(directory or tmp_path / f"server{len(made)}", config=config)
        made.append(s)
        if start:
            s.start()
        return s

    yield make
    for s in made:
        s.stop()
