"""
mbsync (isync) doing a two-way sync of one user against a real server, over
STARTTLS with the server's certificate: pull everything; change the local
Maildir (new folder, a moved message, flags) and push; change the server and
pull again.  Run on the Maildir and the PostgreSQL store by
tests/test_clients_on_both_stores.py.
"""

import os
import subprocess

import imapclient

from tests.imap.conftest import tls_context
from tests.imap.test_clients import fresh_user, message


def write_config(path, server, user, local, host="localhost", implicitTLS=False):
    """An mbsync config syncing ``user`` on ``server`` (STARTTLS on its imap port, or ``implicitTLS``
    on imaps) both ways with the Maildir ``local``."""
    port, sslType = (server.port("imaps"), "IMAPS") if implicitTLS else (server.port("imap"), "STARTTLS")
    with open(path, "w") as f:
        f.write(f"""IMAPAccount test
Host {host}
Port {port}
User {user[0]}
Pass {user[1]}
SSLType {sslType}
CertificateFile {server.certFile}
AuthMechs PLAIN

IMAPStore remote
Account test

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns *
Create Both
Remove Both
Expunge Both
SyncState *
""")


def mbsync(config, timeout=30):
    try:
        result = subprocess.run(["mbsync", "-V", "-c", config, "-a"], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise AssertionError("mbsync hung:\n" + (e.stdout or b"")[-4000:].decode(errors="replace"))
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def maildir_messages(folder):
    out = {}
    for sub in ("cur", "new"):
        d = os.path.join(folder, sub)
        for name in os.listdir(d) if os.path.isdir(d) else []:
            with open(os.path.join(d, name), "rb") as f:
                data = f.read()
            subject = next((line for line in data.split(b"\r\n") + data.split(b"\n") if line.startswith(b"Subject: ")), b"")
            info = name.split(":2,")[1] if ":2," in name else ""
            out[subject.decode().strip()] = (os.path.join(d, name), info)
    return out


def twoWaySync(server, tmp_path):
    user = fresh_user(server)
    c = imapclient.IMAPClient("127.0.0.1", port=server.port("imaps"), ssl=True,
                              ssl_context=tls_context(server), timeout=20)
    c.login(*user)
    c.create_folder("Lists/python")
    c.append("INBOX", message("first"), flags=[b"\\Seen"])
    c.append("INBOX", message("second"))
    c.append("Lists/python", message("list mail"))
    local = tmp_path / "local"
    local.mkdir()
    config = str(tmp_path / "mbsyncrc")
    write_config(config, server, user, local)

    # 1. Pull.
    mbsync(config)
    inbox = maildir_messages(local / "INBOX")
    assert set(inbox) == {"Subject: first", "Subject: second"}
    assert "S" in inbox["Subject: first"][1] and "S" not in inbox["Subject: second"][1]
    assert "Subject: list mail" in maildir_messages(local / "Lists" / "python")
    assert (local / "Sent").is_dir() and (local / "Trash").is_dir()

    # 2. Local changes: a new folder with a message, a message moved from
    #    INBOX to Archive, a flag set.
    new_folder = local / "Projects"
    for sub in ("cur", "new", "tmp"):
        (new_folder / sub).mkdir(parents=True)
    (new_folder / "new" / "1700000000.local1.host").write_bytes(message("local only").replace(b"\r\n", b"\n"))
    path, info = inbox["Subject: first"]
    os.rename(path, str(local / "Archive" / "cur" / os.path.basename(path).split(",U=")[0]) + ":2,S")
    path, info = inbox["Subject: second"]
    os.rename(path, path.split(":2,")[0] + ":2,F")
    mbsync(config)

    c.noop()
    assert c.folder_exists("Projects")
    c.select_folder("Projects")
    data = c.fetch(c.search(), ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
    assert [d[b"BODY[HEADER.FIELDS (SUBJECT)]"].strip() for d in data.values()] == [b"Subject: local only"]
    c.select_folder("INBOX")
    remaining = c.fetch(c.search(), ["FLAGS", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
    assert len(remaining) == 1
    (only,) = remaining.values()
    assert only[b"BODY[HEADER.FIELDS (SUBJECT)]"].strip() == b"Subject: second"
    assert b"\\Flagged" in only[b"FLAGS"]
    c.select_folder("Archive")
    archived = c.fetch(c.search(), ["FLAGS", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
    assert [d[b"BODY[HEADER.FIELDS (SUBJECT)]"].strip() for d in archived.values()] == [b"Subject: first"]
    assert b"\\Seen" in list(archived.values())[0][b"FLAGS"]

    # 3. Server changes pulled back: a new message, a flag, an expunge, a folder.
    c.select_folder("INBOX")
    c.append("INBOX", message("third"))
    uid = list(remaining)[0]
    c.add_flags([uid], [b"\\Answered"])
    c.select_folder("Lists/python")
    c.delete_messages(c.search())
    c.expunge()
    c.create_folder("FromServer")
    c.append("FromServer", message("server side"))
    mbsync(config)
    inbox = maildir_messages(local / "INBOX")
    assert set(inbox) == {"Subject: second", "Subject: third"}
    assert "R" in inbox["Subject: second"][1] and "F" in inbox["Subject: second"][1]
    assert maildir_messages(local / "Lists" / "python") == {}
    assert "Subject: server side" in maildir_messages(local / "FromServer")

    # 4. Nothing changed: a further sync is a no-op on both sides.
    before = sorted(os.listdir(local / "INBOX" / "cur"))
    mbsync(config)
    assert sorted(os.listdir(local / "INBOX" / "cur")) == before
    c.logout()
