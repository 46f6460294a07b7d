"""
JMAP benchmark: mailnet's JMAP beside the same work over IMAP to Dovecot, on
the same Maildir, in one run.

    /work/main/.venv/bin/python bench/jmap_bench.py [--big 100000] [--search 5000]
        [--idle 1000] [--huge-mb 10] [--runs 7] [--keep] [--only list,search,idle,huge]

What it does:

1. Starts mailnet (the real twistd plugin, Maildir store) and makes the user
   bench@example.test with folders Big (``--big`` small messages, mixed
   flags), Search (``--search`` messages of varied text, a third
   quoted-printable, a third base64; a word in 1% of them) and Huge (one
   message with a ``--huge-mb`` MB text body), written straight into the
   Maildir (bench/imap_bench.py's generators).  mailnet indexes them at the
   first JMAP Email/query (timed, not in the ratios).  Copies the Maildir
   for Dovecot and starts it (bench/imap_bench.py's Dovecot).
2. In ``--runs`` rounds alternating which server goes first (medians):
   * list: JMAP ``Email/query`` (inMailbox Big, receivedAt descending,
     limit 50) + ``Email/get`` by back-reference of the list properties
     (id, threadId, mailboxIds, keywords, size, receivedAt, from, to,
     subject, sentAt), one HTTP request on a kept-alive connection, timed
     by the client on 127.0.0.1 (that is the server's time plus the
     loopback); against Dovecot: ``FETCH N-49:N (UID FLAGS INTERNALDATE
     RFC822.SIZE ENVELOPE)`` on a selected connection, and SELECT + that
     FETCH on a fresh one (JMAP has no selected state, so the second is the
     like-for-like figure);
   * search: JMAP ``Email/query`` text filter with calculateTotal on
     Search (every message looked at) against ``SEARCH TEXT`` on Dovecot
     (a fresh SELECT, the SEARCH timed); the hit counts must agree.
3. idle (after huge): mailnet restarted (fresh memory), ``--idle`` EventSource streams
   opened and left idle; the growth of mailnet's RSS per stream, beside the
   growth of Dovecot's summed PSS per IMAP IDLE connection.
5. ``--peer DIR`` (issue 14, the streamed answer): instead of the above,
   two mailnets side by side, this checkout and the one in DIR (e.g. the
   code before, ``git archive c40acdc | tar -x -C DIR``), each with Big
   (``--big``) and Huge; in ``--runs`` rounds alternating which goes first,
   the list (as above) and the Huge Email/get's peak RSS growth (the server
   restarted before the huge rounds), medians and ratios.
4. huge (before idle, in the fresh process): mailnet's peak RSS (VmHWM,
   reset through /proc/PID/clear_refs) over an ``Email/get`` of the Huge
   message's bodyValues (the whole text, ``maxBodyValueBytes`` 0) and over
   a download of its blob, the median of three of each.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import random
import shutil
import socket
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.imap_bench import (NEEDLE, PASSWORD, USER, Client, createFolders, dovecotOnCopy, idleClients,  # noqa: E402
                              memory, searchMessage, smallMessage, writeFolder)
from tests.harness import MailServer  # noqa: E402

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
LIST = ["id", "threadId", "mailboxIds", "keywords", "size", "receivedAt", "from", "to", "subject", "sentAt"]


class JMAP:
    """A kept-alive HTTP connection to the API."""

    def __init__(self, port):
        self.port = port
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        self.auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        from mailnet.jmap.core import accountIdFor
        self.account = accountIdFor(USER)

    def call(self, *calls):
        body = json.dumps({"using": [CORE, MAIL], "methodCalls": [
            [name, dict(args, accountId=self.account), str(n)] for n, (name, args) in enumerate(calls)]})
        try:
            self.connection.request("POST", "/jmap/api/", body, {"Content-Type": "application/json",
                                                                  "Authorization": self.auth})
            response = self.connection.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # Closed by the server's [http] idle_timeout while Dovecot was being set up: a new connection.
            self.connection.close()
            self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
            self.connection.request("POST", "/jmap/api/", body, {"Content-Type": "application/json",
                                                                  "Authorization": self.auth})
            response = self.connection.getresponse()
        data = json.loads(response.read())
        assert response.status == 200, data
        for name, args, _ in data["methodResponses"]:
            assert name != "error", args
        return [args for _, args, _ in data["methodResponses"]]

    def timed(self, *calls):
        t = time.perf_counter()
        answer = self.call(*calls)
        return time.perf_counter() - t, answer

    def mailboxes(self):
        return {m["name"]: m["id"] for m in self.call(("Mailbox/get", {"ids": None, "properties": ["name"]}))[0]["list"]}

    def download(self, blobId):
        self.connection.request("GET", f"/jmap/download/{self.account}/{blobId}/m.eml?type=message/rfc822",
                                headers={"Authorization": self.auth})
        response = self.connection.getresponse()
        total = 0
        while True:
            chunk = response.read(65536)
            if not chunk:
                break
            total += len(chunk)
        assert response.status == 200
        return total


def listPage(jmap, box):
    return jmap.timed(("Email/query", {"filter": {"inMailbox": box}, "sort": [{"property": "receivedAt",
                                                                              "isAscending": False}],
                                       "limit": 50}),
                      ("Email/get", {"#ids": {"resultOf": "0", "name": "Email/query", "path": "/ids"},
                                     "properties": LIST}))


def imapPage(port, fresh):
    """(seconds, number of messages): FETCH of the newest 50 (with the SELECT when ``fresh``)."""
    c = Client(port)
    c.login()
    t = time.perf_counter()
    lines, _, _ = c.command(b"SELECT Big")
    exists = next(int(line.split()[1]) for line in lines if line.endswith(b"EXISTS\r\n"))
    if not fresh:
        t = time.perf_counter()
    lines, _, _ = c.command(b"FETCH %d:%d (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)" % (exists - 49, exists))
    elapsed = time.perf_counter() - t
    c.close()
    return elapsed, sum(1 for line in lines if b" FETCH " in line)


def imapSearch(port):
    c = Client(port)
    c.login()
    c.command(b"SELECT Search")
    t = time.perf_counter()
    lines, _, _ = c.command(b"SEARCH TEXT " + NEEDLE.encode())
    elapsed = time.perf_counter() - t
    c.close()
    found = [line for line in lines if line.startswith(b"* SEARCH")]
    return elapsed, len(found[0].split()) - 2 if found else 0


def hugeMessage(megabytes):
    line = "All work and no play makes a very long message indeed, line after line.\r\n"
    body = line * (megabytes * 1024 * 1024 // len(line))
    return ("From: Big <big@example.org>\r\nTo: bench@example.test\r\nSubject: huge\r\n"
            "Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <huge@bench.example>\r\n\r\n" + body).encode()


def status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def resetPeak(pid):
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # Linux: the peak RSS (VmHWM) starts again from the current RSS


def eventStreams(port, count):
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode())
    out = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        s.sendall(b"GET /jmap/eventsource/?types=*&closeafter=no&ping=0 HTTP/1.1\r\nHost: x\r\n"
                  b"Authorization: Basic " + auth + b"\r\n\r\n")
        head = b""
        while b"mailnet push" not in head:
            chunk = s.recv(4096)
            assert chunk, head
            head += chunk
        assert head.startswith(b"HTTP/1.1 200"), head[:200]
        out.append(s)
    return out


def peakOfGet(jmap, pid, hugeId):
    rss = status(pid, "VmRSS")
    resetPeak(pid)
    answer = jmap.call(("Email/get", {"ids": [hugeId], "properties": ["bodyValues", "textBody"],
                                      "fetchTextBodyValues": True}))
    got = sum(len(v["value"]) for v in answer[0]["list"][0]["bodyValues"].values())
    return status(pid, "VmHWM") - rss, got


def peerRun(args):
    """``--peer``: this checkout against the one in args.peer, the list and the huge Email/get (see the top)."""
    run = tempfile.mkdtemp(prefix="jmapbench-")
    os.chmod(run, 0o755)
    print("run directory:", run)
    print("machine: %d CPUs, load average %.2f %.2f %.2f" % ((os.cpu_count(),) + os.getloadavg()))
    config = {"store": {"backend": "maildir"}, "auth": {"allow_plaintext": True, "failure_delay": 0.05}}
    servers = {"new": MailServer(os.path.join(run, "new"), config=config),
               "peer": MailServer(os.path.join(run, "peer"), config=config,
                                  env={"PYTHONPATH": os.path.abspath(args.peer)})}
    try:
        for server in servers.values():
            server.start()
            server.addUser(USER, PASSWORD)
            c = Client(server.port("imap"))
            c.login()
            for folder in (b"Big", b"Huge"):
                c.command(b"CREATE " + folder)
            c.close()
            writeFolder(server.maildir(USER, "Big"), args.big, smallMessage, 1)
            writeFolder(server.maildir(USER, "Huge"), 1, lambda rng, i: hugeMessage(args.huge_mb), 3, flags=False)
        clients, boxes = {}, {}
        for name, server in servers.items():
            clients[name] = JMAP(server.port("http"))
            boxes[name] = clients[name].mailboxes()
            listPage(clients[name], boxes[name]["Big"])  # indexing, not timed
        samples = {}
        for n in range(args.runs):
            for name in (("new", "peer") if n % 2 == 0 else ("peer", "new")):
                elapsed, answer = listPage(clients[name], boxes[name]["Big"])
                assert len(answer[1]["list"]) == 50
                samples.setdefault("list_" + name, []).append(elapsed)
        hugeIds = {}
        for name, server in servers.items():
            server.stop()
            server.start()
            clients[name] = JMAP(server.port("http"))
            [hugeIds[name]] = clients[name].call(("Email/query", {"filter": {"inMailbox": boxes[name]["Huge"]}}))[0]["ids"]
        for n in range(3):
            for name in (("new", "peer") if n % 2 == 0 else ("peer", "new")):
                t = time.perf_counter()
                peak, got = peakOfGet(clients[name], servers[name].process.pid, hugeIds[name])
                samples.setdefault("huge_" + name, []).append(peak)
                samples.setdefault("hugetime_" + name, []).append(time.perf_counter() - t)
                samples["chars_" + name] = got
    finally:
        for server in servers.values():
            server.stop()
        if not args.keep:
            shutil.rmtree(run, ignore_errors=True)
    assert samples["chars_new"] == samples["chars_peer"]
    for k, v in samples.items():
        if isinstance(v, list):
            print("  %s runs: %s" % (k, " ".join("%.4f" % x for x in v)))
    med = {k: statistics.median(v) for k, v in samples.items() if isinstance(v, list)}
    print()
    print("load average at the end: %.2f %.2f %.2f" % os.getloadavg())
    print("| measurement | this checkout | peer (%s) | ratio (this / peer) |" % args.peer)
    print("|---|---|---|---|")
    print("| newest 50 of %d: Email/query + Email/get | %.1f ms | %.1f ms | %.2f |"
          % (args.big, med["list_new"] * 1e3, med["list_peer"] * 1e3, med["list_new"] / med["list_peer"]))
    print("| Email/get bodyValues of a %d MB body (%d characters): peak RSS growth | %.1f MB | %.1f MB | %.2f |"
          % (args.huge_mb, samples["chars_new"], med["huge_new"] / 1e6, med["huge_peer"] / 1e6,
             med["huge_new"] / med["huge_peer"]))
    print("| the same: time | %.2f s | %.2f s | %.2f |"
          % (med["hugetime_new"], med["hugetime_peer"], med["hugetime_new"] / med["hugetime_peer"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--big", type=int, default=100000)
    parser.add_argument("--search", type=int, default=5000)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--huge-mb", type=int, default=10)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the run directory")
    parser.add_argument("--only", default="list,search,idle,huge")
    parser.add_argument("--peer", help="another checkout to run beside this one (list and huge only)")
    args = parser.parse_args()
    if args.peer:
        return peerRun(args)
    only = set(args.only.split(","))
    if shutil.which("dovecot") is None:
        sys.exit("dovecot is not installed (apt-get install dovecot-imapd)")
    run = tempfile.mkdtemp(prefix="jmapbench-")
    os.chmod(run, 0o755)
    print("run directory:", run)
    print("machine: %d CPUs, load average %.2f %.2f %.2f" % ((os.cpu_count(),) + os.getloadavg()))
    server = MailServer(os.path.join(run, "mailnet"), config={
        "store": {"backend": "maildir"},
        "auth": {"allow_plaintext": True, "failure_delay": 0.05},
        "limits": {"connections": 5000, "connections_per_ip": 5000, "imap_connections_per_user": 5000},
        "http": {"push_connections_per_user": args.idle + 10},
    })
    dovecot = None
    rows = []
    try:
        server.start()
        server.addUser(USER, PASSWORD)
        createFolders(server.port("imap"), b"Big", b"Search", b"Huge")
        t = time.time()
        writeFolder(server.maildir(USER, "Big"), args.big, smallMessage, 1)
        writeFolder(server.maildir(USER, "Search"), args.search, searchMessage, 2)
        writeFolder(server.maildir(USER, "Huge"), 1, lambda rng, i: hugeMessage(args.huge_mb), 3, flags=False)
        print("wrote %d messages in %.1fs" % (args.big + args.search + 1, time.time() - t))
        jmap = JMAP(server.port("http"))
        boxes = jmap.mailboxes()
        t = time.perf_counter()
        first, answer = listPage(jmap, boxes["Big"])
        print("mailnet first Email/query + Email/get (indexing %d messages): %.1fs" % (args.big, first))
        jmap.call(("Email/query", {"filter": {"inMailbox": boxes["Search"]}, "limit": 1}))
        jmap.call(("Email/query", {"filter": {"inMailbox": boxes["Huge"]}}))

        local, domain = USER.split("@")
        dovecot = dovecotOnCopy(run, server)
        dovecot.start()
        t = time.perf_counter()
        imapPage(dovecot.port, True)
        imapSearch(dovecot.port)
        print("Dovecot first SELECT + FETCH + SEARCH (indexing): %.1fs" % (time.perf_counter() - t))

        samples = {}
        for n in range(args.runs):
            order = ("mailnet", "dovecot") if n % 2 == 0 else ("dovecot", "mailnet")
            for name in order:
                if "list" in only:
                    if name == "mailnet":
                        elapsed, answer = listPage(jmap, boxes["Big"])
                        assert len(answer[1]["list"]) == 50
                        samples.setdefault("jmap_list", []).append(elapsed)
                    else:
                        for fresh in (False, True):
                            elapsed, count = imapPage(dovecot.port, fresh)
                            assert count == 50, count
                            samples.setdefault("imap_list_fresh" if fresh else "imap_list", []).append(elapsed)
                if "search" in only:
                    if name == "mailnet":
                        elapsed, answer = jmap.timed(("Email/query", {
                            "filter": {"inMailbox": boxes["Search"], "text": NEEDLE}, "calculateTotal": True}))
                        samples.setdefault("jmap_search", []).append(elapsed)
                        samples["jmap_hits"] = answer[0]["total"]
                    else:
                        elapsed, hits = imapSearch(dovecot.port)
                        samples.setdefault("imap_search", []).append(elapsed)
                        samples["imap_hits"] = hits
        med = {k: statistics.median(v) for k, v in samples.items() if isinstance(v, list)}
        for k, v in samples.items():
            if isinstance(v, list):
                print("  %s runs: %s" % (k, " ".join("%.4f" % x for x in v)))
        if "list" in only:
            rows.append("| newest 50 of %d: JMAP Email/query + Email/get vs IMAP SELECT + FETCH (fresh connection)"
                        " | %.1f ms | %.1f ms | %.2f |" % (args.big, med["jmap_list"] * 1e3, med["imap_list_fresh"] * 1e3,
                                                          med["jmap_list"] / med["imap_list_fresh"]))
            rows.append("| newest 50 of %d: the same vs IMAP FETCH alone (selected connection) | %.1f ms | %.1f ms | %.2f |"
                        % (args.big, med["jmap_list"] * 1e3, med["imap_list"] * 1e3, med["jmap_list"] / med["imap_list"]))
        if "search" in only:
            assert samples["jmap_hits"] == samples["imap_hits"], (samples["jmap_hits"], samples["imap_hits"])
            rows.append("| text search, %d messages (%d hits): Email/query text + calculateTotal vs SEARCH TEXT"
                        " | %.0f ms | %.0f ms | %.2f |" % (args.search, samples["jmap_hits"], med["jmap_search"] * 1e3,
                                                           med["imap_search"] * 1e3, med["jmap_search"] / med["imap_search"]))

        if "idle" in only or "huge" in only:
            server.stop()
            server.start()
            jmap = JMAP(server.port("http"))
            jmap.call(("Email/query", {"limit": 1}))
        pid = server.process.pid
        if "huge" in only:
            jmap = JMAP(server.port("http"))
            boxes = jmap.mailboxes()
            [hugeId] = jmap.call(("Email/query", {"filter": {"inMailbox": boxes["Huge"]}}))[0]["ids"]
            size = args.huge_mb * 1024 * 1024
            gets, downloads = [], []
            for _ in range(3):  # the median of three of each, alternating
                rss = status(pid, "VmRSS")
                resetPeak(pid)
                t = time.perf_counter()
                answer = jmap.call(("Email/get", {"ids": [hugeId], "properties": ["bodyValues", "textBody"],
                                                  "fetchTextBodyValues": True}))
                elapsed = time.perf_counter() - t
                value = answer[0]["list"][0]["bodyValues"]
                got = sum(len(v["value"]) for v in value.values())
                gets.append(status(pid, "VmHWM") - rss)
                del answer, value
                rss = status(pid, "VmRSS")
                resetPeak(pid)
                t2 = time.perf_counter()
                downloaded = jmap.download(hugeId)
                elapsed2 = time.perf_counter() - t2
                downloads.append(status(pid, "VmHWM") - rss)
            peakGet, peakDownload = statistics.median(gets), statistics.median(downloads)
            print("huge: Email/get bodyValues %d characters in %.2fs, peak RSS +%.1f MB; download %d bytes in %.2fs,"
                  " peak RSS +%.1f MB" % (got, elapsed, peakGet / 1e6, downloaded, elapsed2, peakDownload / 1e6))
            rows.append("| Email/get bodyValues of a %d MB body: peak RSS growth | %.1f MB (%.1fx the body) | | |"
                        % (args.huge_mb, peakGet / 1e6, peakGet / size))
            rows.append("| download of that message's blob: peak RSS growth | %.1f MB | | |" % (peakDownload / 1e6))
        if "idle" in only:
            warm = eventStreams(server.port("http"), 5)
            time.sleep(0.5)
            before = memory([pid])
            streams = eventStreams(server.port("http"), args.idle)
            time.sleep(1.0)
            after = memory([pid])
            mailnetPer = (after[0] - before[0]) / args.idle
            warmD = idleClients(dovecot.port, 5)
            time.sleep(0.5)
            beforeD = memory(dovecot.pids())
            clients = idleClients(dovecot.port, args.idle)
            time.sleep(1.0)
            afterD = memory(dovecot.pids())
            dovecotPer = (afterD[1] - beforeD[1]) / args.idle
            print("mailnet: %d EventSource streams: +%.1f MB RSS; Dovecot: %d IDLE: +%.1f MB PSS (+%.1f MB RSS)"
                  % (args.idle, (after[0] - before[0]) / 1e6, args.idle, (afterD[1] - beforeD[1]) / 1e6,
                     (afterD[0] - beforeD[0]) / 1e6))
            rows.append("| memory per idle push client (%d): JMAP EventSource vs IMAP IDLE | %.1f KB RSS | %.1f KB PSS"
                        " | %.2f |" % (args.idle, mailnetPer / 1024, dovecotPer / 1024, mailnetPer / dovecotPer))
            for s in streams + warm:
                s.close()
            for client in clients + warmD:
                client.sock.close()
            time.sleep(1.0)
    finally:
        if dovecot is not None:
            dovecot.stop()
        server.stop()
        if not args.keep:
            shutil.rmtree(run, ignore_errors=True)
    print()
    print("load average at the end: %.2f %.2f %.2f" % os.getloadavg())
    print("| measurement | mailnet | Dovecot | ratio (mailnet / Dovecot) |")
    print("|---|---|---|---|")
    for row in rows:
        print(row)


if __name__ == "__main__":
    random.seed(0)
    main()
