"""
Webmail: time from login to the inbox list drawn (not a test).

    python bench/webmail_load.py [--messages 100000] [--runs 5]

Starts the real server (tests/harness.py) with two accounts written
directly in the Maildir format (bench/store_threads.py's way): ``big``
with N messages in INBOX and, the peer in the same run, ``small`` with 100.
The store's list index is warmed first (one Email/query over Basic auth:
the first listEmails of 100,000 indexes every message); the accounts stay
in /tmp/mailnet-bench-webmail-N for the next run. Then Chromium
(/usr/bin/chromium) logs in through the app's form ``--runs`` times per
account, each in a fresh browser context; the browser's own timing is the
``login-to-inbox`` measure the app records (performance.mark at the
login submit and when the first rows are drawn). Also timed: a jump to
the middle of the list (scrollTop set; rows there drawn). The first
login per account after the server's start is printed apart (cold
indexes) and not counted.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import statistics
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from twisted.internet import defer  # noqa: E402

import store_threads  # noqa: E402
from mailnet.store.maildir import MaildirStore  # noqa: E402
from mailnet.store.maildir.files import UidList  # noqa: E402
from mailnet.store.maildir.modlog import ModLog  # noqa: E402
from tests.harness import MailServer  # noqa: E402

PASSWORD = "bench-pw"
DIRECTORY = "/tmp/mailnet-bench-webmail"


def build(mailRoot, user, n):
    """N messages in the user's INBOX, written like bench/store_threads.py does."""
    store = MaildirStore(mailRoot, runner=lambda f, *a: defer.maybeDeferred(f, *a))
    store.getAccount(user)
    local, domain = user.split("@")
    account = os.path.join(mailRoot, domain, local)
    cur = os.path.join(account, "cur")
    records, lines = [], []
    t0 = time.time() - n
    uidlist = UidList(account)
    uidlist.readNew()
    for i in range(1, n + 1):
        data = store_threads.message(i).replace(b"To: big@bench.test", b"To: " + user.encode())
        base = f"{int(t0 + i)}.M{i}P1Q{i}.bench,S={len(data)},W={len(data)}"
        with open(os.path.join(cur, f"{base}:2,S" if i % 3 else f"{base}:2,"), "wb") as f:
            f.write(data)
        records.append((i, base, ()))
        lines.append(ModLog.added(2, i, float(int(t0 + i)), len(data), "S" if i % 3 else ""))
    uidlist.append(records)
    log = ModLog(account)
    log.readNew()
    log.append(lines)


def warm(server, user):
    auth = base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()
    session = json.load(urllib.request.urlopen(urllib.request.Request(server.url("/.well-known/jmap"), headers={"Authorization": "Basic " + auth})))
    account = session["primaryAccounts"]["urn:ietf:params:jmap:mail"]
    body = json.dumps({"using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"], "methodCalls": [
        ["Email/query", {"accountId": account, "limit": 50, "calculateTotal": True}, "q"]]}).encode()
    t = time.perf_counter()
    request = urllib.request.Request(server.url("/jmap/api/"), data=body, headers={"Authorization": "Basic " + auth, "Content-Type": "application/json"})
    total = json.load(urllib.request.urlopen(request, timeout=600))["methodResponses"][0][1].get("total")
    return total, time.perf_counter() - t


def measure(browser, server, user):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(server.url("/"))
    page.fill("#login-user", user)
    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_function("() => performance.getEntriesByName('login-to-inbox').length > 0", timeout=120000)
    loginToInbox = page.evaluate("performance.getEntriesByName('login-to-inbox')[0].duration")
    middle = page.evaluate("""() => new Promise((resolve) => {
        const list = document.getElementById('list');
        const target = Math.floor(list.scrollHeight / 2);
        const want = Math.floor(target / 60);
        const t = performance.now();
        list.scrollTop = target;
        const check = () => {
            if (document.querySelector(`.row[data-position="${want}"]`)) resolve(performance.now() - t);
            else setTimeout(check, 5);
        };
        check();
    })""")
    rows = page.locator(".row").count()
    context.close()
    return loginToInbox, middle, rows


def main():
    sys.stdout.reconfigure(line_buffering=True)
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    sys.stdout.reconfigure(line_buffering=True)
    # Kept between runs (like bench/store_threads.py's): building and indexing 100,000 takes minutes.
    directory = f"{DIRECTORY}-{args.messages}"
    done = os.path.join(directory, ".built")
    if not os.path.exists(done):
        shutil.rmtree(directory, ignore_errors=True)
    server = MailServer(directory)
    accounts = {"small@example.test": 100, "big@example.test": args.messages}
    if not os.path.exists(done):
        t = time.perf_counter()
        for user, n in accounts.items():
            build(os.path.join(server.dataDir, "mail"), user, n)
            server.addUser(user, PASSWORD)
        open(done, "w").close()
        print(f"built {sum(accounts.values())} messages in {time.perf_counter() - t:.1f} s")
    server.start()
    try:
        for user, n in accounts.items():
            total, seconds = warm(server, user)
            print(f"{user}: {total} messages; first Email/query of this server {seconds:.1f} s")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            results = {user: [] for user in accounts}
            for user in accounts:
                # The first login after the server started pays for loading the store's indexes.
                first = measure(browser, server, user)
                print(f"{user}: first login after start {first[0]:.0f} ms (not counted below)")
            for _ in range(args.runs):
                for user in accounts:      # interleaved: both see the same load
                    results[user].append(measure(browser, server, user))
            browser.close()
        medians = {}
        for user, runs in results.items():
            login = [r[0] for r in runs]
            middle = [r[1] for r in runs]
            medians[user] = statistics.median(login)
            print(f"{user} ({accounts[user]} messages): login-to-inbox median {statistics.median(login):.0f} ms "
                  f"(min {min(login):.0f}, max {max(login):.0f}); jump to the middle median {statistics.median(middle):.0f} ms; "
                  f"rows in the DOM {runs[0][2]}")
        print(f"ratio big/small login-to-inbox: {medians['big@example.test'] / medians['small@example.test']:.2f}x")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
