"""
Per-stage message log lines on the real server: one id (the SMTP reply's,
the spool item's) on the line of every stage -- stored, received, deferred
-- in text and in JSON (`[log] format = "json"`, every line an object).
"""

from __future__ import annotations

import json
import smtplib

import pytest

from tests.conftest import USERS

ALICE = "alice@example.test"


def _send(server, listener, rcpt, login=False):
    with smtplib.SMTP("127.0.0.1", server.port(listener), timeout=30) as s:
        s.ehlo("client.example")
        if login:
            s.login(ALICE, USERS[ALICE])
        sender = ALICE if login else "someone@elsewhere.example"
        assert s.mail(sender)[0] == 250
        assert s.rcpt(rcpt)[0] == 250
        code, text = s.data(b"From: <%s>\r\nTo: <%s>\r\nSubject: stages\r\n\r\nHello.\r\n"
                            % (sender.encode(), rcpt.encode()))
        assert code == 250, text
        return text.decode().rsplit(" ", 1)[1]  # "2.0.0 OK id <id>"


def _server(make_server, fmt):
    config = {"auth": {"allow_plaintext": True}}
    if fmt != "text":  # text is the default
        config["log"] = {"format": fmt}
    server = make_server(config=config)
    for name, password in USERS.items():
        server.addUser(name, password)
    return server


def test_text_lines_carry_the_id_and_the_stage(make_server):
    server = _server(make_server, "text")
    local = _send(server, "smtp", "bob@example.test")
    line = server.waitForLog(f"message {local} ")
    assert line.endswith("stage=stored") and "stored for bob@example.test" in line
    # A remote recipient: received by SMTP, then the queue (DNS fails here) defers it, same id.
    remote = _send(server, "submission", "far@remote.example", login=True)
    received = server.waitForLog(f"message {remote} ")
    assert received.endswith("stage=received") and f"queued {remote}" in received
    deferred = server.waitForLog(f"queue {remote}: to=<far@remote.example>", timeout=30)
    assert "deferred (" in deferred and deferred.endswith("stage=deferred")
    assert len([x for x in server.output if remote in x]) == 2


def test_json_lines_parse_and_carry_the_fields(make_server):
    server = _server(make_server, "json")
    local = _send(server, "smtp", "bob@example.test")
    remote = _send(server, "submission", "far@remote.example", login=True)
    server.waitForLog(f"queue {remote}: to=<far@remote.example>", timeout=30)
    events = []
    for text in list(server.output):
        if not text.startswith("{"):
            continue  # twistd's own lines before our observer starts
        events.append(json.loads(text))
    assert len(events) > 5
    assert all({"time", "level", "namespace", "text"} <= set(e) for e in events)
    stored = [e for e in events if e.get("id") == local]
    assert [e["stage"] for e in stored] == ["stored"] and stored[0]["level"] == "info"
    assert stored[0]["sender"] == "someone@elsewhere.example" and stored[0]["local"] == ["bob@example.test"]
    stages = [e["stage"] for e in events if e.get("id") == remote]
    assert stages == ["received", "deferred"], stages
    # Once the observer runs, every line is JSON (no DNS chatter either).
    first = next(i for i, t in enumerate(server.output) if t.startswith("{"))
    rest = [t for t in server.output[first:] if t.strip()]
    bad = [t for t in rest if not t.startswith("{")]
    assert not bad, bad[:5]
    for t in rest:
        json.loads(t)


@pytest.mark.parametrize("fmt", ["xml"])
def test_bad_format_is_a_config_error(tmp_path, fmt):
    from mailnet.config import ConfigError, fromDict

    with pytest.raises(ConfigError) as e:
        fromDict({"log": {"format": fmt}}, source="t.toml")
    assert "[log] format" in str(e.value)
