#!/usr/bin/env python3
"""
Mail authentication's CPU cost in mailnet and in a peer, Postfix with
OpenDKIM as a milter, measured the same way in one run: the same 4 KB
messages, the same clients (bench/smtpshapes.py: ``persistent``,
``connection``, ``starttls``), fresh servers for every measurement,
interleaved (each round runs mailnet off, Postfix off, mailnet on, Postfix
on, the order reversed from round to round).

Workloads (``--only``):

* ``sign``: mail from alice@a.test to bob@a.test, DKIM-signed with an
  RSA-2048 key; ``sign-ed25519``: with an Ed25519 key.  mailnet signs for
  its authenticated users, so its clients log in (AUTH PLAIN on the
  submission listener, credentials cached by the server); OpenDKIM signs
  mail from its InternalHosts (127.0.0.1), so Postfix's clients do not.
* ``verify``: mail signed by a.test (RSA-2048) arriving for bob@b.test.
  Postfix: OpenDKIM verifies the signature (DKIM only) and adds
  Authentication-Results, the public key read from a file (OpenDKIM's
  TestPublicKeys: no DNS query, as with a cached answer; ``--opendkim-dns
  unbound`` asks the test DNS server instead, through libunbound, which
  crashed OpenDKIM here, see opendkimConf).  mailnet: its ``mx`` workload,
  SPF + DKIM + DMARC (``[mailauth] inbound``), more work than OpenDKIM's,
  its records from the test DNS server (cached after the warm-up).

Off = Postfix without a milter, mailnet with the workload's feature off
(no key; ``inbound = false``); on = Postfix with OpenDKIM
(``smtpd_milters``; a unix socket, or ``--milter inet``), mailnet with it on.

CPU: every process of each server is in a cpuacct cgroup (v1
``cpuacct.usage`` or v2 ``cpu.stat``): for Postfix master, smtpd, cleanup,
qmgr, trivial-rewrite, virtual, tlsmgr, anvil, postlogd and any short-lived
daemon, plus opendkim in a cgroup of its own (its share is printed); for
mailnet its one process.  Counted from after a
warm-up until every message is delivered (Postfix delivers after the 250:
the bench waits for the Maildir), divided by the messages.  Delivery is
local on both (Postfix virtual(8) to a Maildir, mailnet its own store).
The DNS server (tests/queue/dnsserver.py) runs outside the cgroups, as a
real resolver would.  Both servers use the same ECDSA P-256 certificate
for STARTTLS.  Postfix runs from a private config_directory and
queue_directory under the scratch directory, listening on 127.0.0.1 only;
its log goes to a file there (postlogd, counted).  Needs root (cgroups,
postfix).

    /work/main/.venv/bin/python bench/mailauth_peer.py [--messages 500] [--repeat 3]
        [--shapes persistent,connection,starttls] [--only sign,sign-ed25519,verify] [--milter unix|inet]
        [--opendkim-dns keys-file|unbound] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.harness import MailServer, freePort  # noqa: E402
from tests.mailauth.helpers import ZoneServer  # noqa: E402

from mailauth_bench import makeKeys, message, signedMessage  # noqa: E402 (bench/)
from smtpshapes import SHAPES, load  # noqa: E402 (bench/)

VUID = 12025  # virtual(8) delivers as this uid/gid (no passwd entry needed)
WORKLOADS = ("sign", "sign-ed25519", "verify")
MARKERS = {"sign": b"a=rsa-sha256", "sign-ed25519": b"a=ed25519-sha256", "verify": b"dkim=pass"}


class Cgroup:
    """A cgroup for one server's processes; ``usage()`` = CPU seconds of all of them, exited ones included."""

    def __init__(self, name):
        v1 = "/sys/fs/cgroup/cpuacct"
        if os.path.exists(os.path.join(v1, "cpuacct.usage")):
            self.path, self.v2 = os.path.join(v1, name), False
        elif os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            self.path, self.v2 = os.path.join("/sys/fs/cgroup", name), True
        else:
            raise SystemExit("no cpuacct (cgroup v1) or cgroup v2 hierarchy mounted")
        os.mkdir(self.path)

    @property
    def prefix(self):
        """argv that enters the cgroup, then execs the rest (the pid stays the same)."""
        return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', os.path.join(self.path, "cgroup.procs")]

    def usage(self):
        if self.v2:
            with open(os.path.join(self.path, "cpu.stat")) as f:
                return int(dict(line.split() for line in f)["usage_usec"]) / 1e6
        with open(os.path.join(self.path, "cpuacct.usage")) as f:
            return int(f.read()) / 1e9

    def pids(self):
        with open(os.path.join(self.path, "cgroup.procs")) as f:
            return [int(x) for x in f.read().split()]

    def empty(self, timeout=20):
        """Wait until every process in it has exited; SIGKILL what is left after ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in self.pids():  # ours: only processes this bench started enter the cgroup
            os.kill(pid, signal.SIGKILL)
        while self.pids():
            time.sleep(0.05)

    def remove(self):
        self.empty(5)
        os.rmdir(self.path)


MAIN_CF = """\
compatibility_level = 3.6
config_directory = {d}/etc
queue_directory = {d}/queue
data_directory = {d}/data
meta_directory = /etc/postfix
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
myhostname = mx.peer.test
mydomain = peer.test
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost =
alias_maps =
alias_database =
local_recipient_maps =
biff = no
append_dot_mydomain = no
smtpd_banner = $myhostname ESMTP
default_transport = error:bench instance does not relay
relay_transport = error:bench instance does not relay
virtual_mailbox_domains = a.test, b.test
virtual_mailbox_base = {d}
virtual_mailbox_maps = static:maildir/
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{uid}
virtual_minimum_uid = 100
smtpd_tls_security_level = may
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
milter_default_action = tempfail
milter_protocol = 6
{milters}
"""

MASTER_CF = """\
127.0.0.1:{port} inet n  -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def opendkimConf(d, workload, keyDir, ctx, socket, dnsMode):
    """OpenDKIM's config for ``workload``: KeyTable and SigningTable files for signing; for verifying, the
    public keys from a file (TestPublicKeys: what a resolver with the answers cached gives) or, with
    ``dnsMode`` "unbound", from the test DNS server through libunbound."""
    lines = ["Syslog no", "LogWhy yes", "UMask 000", f"Socket {socket}", f"PidFile {d}/opendkim.pid",
             "Canonicalization relaxed/relaxed", "RequireSafeKeys no", "AuthservID mx.peer.test"]
    if workload == "verify" and dnsMode == "unbound":
        # libunbound by default neither queries 127.0.0.1 nor looks up the RFC 6761 name "test" (it
        # answers NXDOMAIN itself), and Nameservers takes no port.  OpenDKIM 2.11 parses this file again
        # for new milter connections, in several threads at once: with 4 clients it crashed (SIGSEGV,
        # "fatal flex scanner internal error") within the first second, in 3 runs of 3.
        lines.append(f"ResolverConfiguration {d}/unbound.conf")
        with open(os.path.join(d, "unbound.conf"), "w") as f:
            f.write('server:\n  do-not-query-localhost: no\n  local-zone: "test." nodefault\n'
                    f'forward-zone:\n  name: "."\n  forward-addr: 127.0.0.1@{ctx["dnsPort"]}\n')
    elif workload == "verify":
        lines.append(f"TestPublicKeys {d}/publickeys")
        with open(os.path.join(d, "publickeys"), "w") as f:
            f.writelines(f"{name} {''.join(records['TXT'])}\n" for name, records in ctx["zone"].items()
                         if "._domainkey." in name)
    if workload == "verify":
        lines += ["Mode v", "InternalHosts 192.0.2.1"]  # 127.0.0.1 must count as outside, to be verified
    else:
        rsa = workload == "sign"
        selector = "rsa1" if rsa else "ed1"
        key = os.path.join(keyDir, f"{selector}.{'rsa' if rsa else 'ed25519'}.key")
        if not rsa:  # mailnet keeps the raw 32-byte seed in base64 (as dkimpy); OpenDKIM reads PEM
            key = ed25519Pem(key, os.path.join(d, "ed1.pem"))
        with open(os.path.join(d, "keytable"), "w") as f:
            f.write(f"{selector}._domainkey.a.test a.test:{selector}:{key}\n")
        with open(os.path.join(d, "signingtable"), "w") as f:
            f.write(f"*@a.test {selector}._domainkey.a.test\n")
        lines += ["Mode s", "InternalHosts 127.0.0.1", f"KeyTable file:{d}/keytable",
                  f"SigningTable refile:{d}/signingtable",
                  f"SignatureAlgorithm {'rsa-sha256' if rsa else 'ed25519-sha256'}"]
    path = os.path.join(d, "opendkim.conf")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def ed25519Pem(seedFile, path):
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    with open(seedFile, "rb") as f:
        key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(f.read().strip()))
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return path


def maildirCount(path):
    try:
        return len(os.listdir(os.path.join(path, "new")))
    except FileNotFoundError:
        return 0


def waitDelivered(path, count, timeout=120):
    deadline = time.monotonic() + timeout
    while maildirCount(path) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path}: {maildirCount(path)} of {count} delivered")
        time.sleep(0.02)


def lastHead(files):
    with open(max(files, key=os.path.getmtime), "rb") as f:
        return f.read(4096)


def sendFor(workload, signed):
    if workload == "verify":
        return dict(login=None, sender="alice@a.test", rcpt="bob@b.test", data=signed)
    return dict(login=("alice@a.test", "alice-pw"), sender="alice@a.test", rcpt="bob@a.test",
                data=message(1).replace(b"bob@b.test", b"bob@a.test"))


def measure(groups, port, send, args, shape, maildir=None):
    """Warm up, then CPU µs per message of each of ``groups`` while ``args.messages`` go through (and,
    given a ``maildir``, are delivered to it: Postfix delivers after its 250; mailnet before)."""
    warm = args.sessions * 10
    load(port, warm, args.sessions, shape=shape, **send)
    if maildir:
        waitDelivered(maildir, warm)
    before, started = [g.usage() for g in groups], time.monotonic()
    sent = load(port, args.messages, args.sessions, shape=shape, **send)
    if maildir:
        waitDelivered(maildir, warm + sent)
    used = [(g.usage() - b) / sent * 1e6 for g, b in zip(groups, before)]
    return used, sent / (time.monotonic() - started), sent + warm


def runMailnet(groups, workload, mode, shape, ctx, args, n):
    directory = os.path.join(ctx["scratch"], f"mailnet-{shape}-{workload}-{mode}-{n}")
    common = {"dns": {"nameservers": [f"127.0.0.1:{ctx['dnsPort']}"], "timeout": 2},
              "tls": {"cert": ctx["cert"], "key": ctx["key"]}}
    if workload == "verify":
        config = {"server": {"hostname": "mx.b.test"}, "domains": {"local": ["b.test"]},
                  "mailauth": {"inbound": mode == "on"}, **common}
    else:
        config = {"server": {"hostname": "mx.a.test"}, "domains": {"local": ["a.test"]},
                  "auth": {"allow_plaintext": True, "cache_seconds": 300}, **common}
    group, = groups
    server = MailServer(directory, config=config, prefix=group.prefix)
    if workload != "verify" and mode == "on":
        target = os.path.join(server.dataDir, "dkim", "a.test")
        os.makedirs(target, mode=0o700)
        suffix = ".rsa.key" if workload == "sign" else ".ed25519.key"
        for name in os.listdir(ctx["keyDir"]):
            if name.endswith(suffix):
                shutil.copy2(os.path.join(ctx["keyDir"], name), target)
    server.start()
    try:
        send = sendFor(workload, ctx["signed"])
        if workload == "verify":
            server.addUser("bob@b.test", "bob-pw")
            port = server.port("smtp")
        else:
            server.addUser("alice@a.test", "alice-pw")
            server.addUser("bob@a.test", "bob-pw")
            port = server.port("submission")
        (us,), rate, total = measure(groups, port, send, args, shape)
        files = server.messageFiles(send["rcpt"])
        assert len(files) == total, (len(files), total)
        if mode == "on":
            head = lastHead(files)
            assert MARKERS[workload] in head, head[:1500]
        return us, rate, None
    finally:
        server.stop()
        group.empty()


def runPostfix(groups, workload, mode, shape, ctx, args, n):
    group, milterGroup = groups
    d = os.path.join(ctx["scratch"], f"postfix-{shape}-{workload}-{mode}-{n}")
    for sub in ("etc", "queue", "data", "maildir/new", "maildir/cur", "maildir/tmp"):
        os.makedirs(os.path.join(d, sub))
    os.chmod(d, 0o755)
    os.chown(os.path.join(d, "data"), _uid("postfix"), -1)
    for sub in ("maildir", "maildir/new", "maildir/cur", "maildir/tmp"):
        os.chown(os.path.join(d, sub), VUID, VUID)
    port = freePort()
    milters, opendkim = "", None
    if mode == "on":
        if args.milter == "inet":
            mport = freePort()
            socket, milters = f"inet:{mport}@127.0.0.1", f"smtpd_milters = inet:127.0.0.1:{mport}"
        else:
            sockDir = os.path.join(d, "milter")
            os.makedirs(sockDir)
            os.chmod(sockDir, 0o755)
            socket, milters = f"local:{sockDir}/opendkim.sock", f"smtpd_milters = unix:{sockDir}/opendkim.sock"
        conf = opendkimConf(d, workload, ctx["keyDir"], ctx, socket, args.opendkim_dns)
        log = open(os.path.join(d, "opendkim.log"), "w")
        opendkim = subprocess.Popen(milterGroup.prefix + ["/usr/sbin/opendkim", "-f", "-x", conf],
                                    stdout=log, stderr=subprocess.STDOUT)
        waitFor(lambda: os.path.exists(socket.split(":", 1)[1]) if args.milter != "inet" else portOpen(mport),
                f"opendkim did not open {socket}", opendkim)
    with open(os.path.join(d, "etc", "main.cf"), "w") as f:
        f.write(MAIN_CF.format(d=d, uid=VUID, cert=ctx["cert"], key=ctx["key"], milters=milters))
    with open(os.path.join(d, "etc", "master.cf"), "w") as f:
        f.write(MASTER_CF.format(port=port))
    check = subprocess.run(["postfix", "-c", f"{d}/etc", "check"], capture_output=True, text=True)
    if check.returncode:
        raise RuntimeError(f"postfix check: {check.stdout}{check.stderr}")
    subprocess.run(group.prefix + ["postfix", "-c", f"{d}/etc", "start"], check=True, capture_output=True)
    try:
        waitFor(lambda: portOpen(port), f"postfix did not open 127.0.0.1:{port}")
        send = sendFor(workload, ctx["signed"])
        send["login"] = None  # OpenDKIM signs for InternalHosts: no SASL in this Postfix
        maildir = os.path.join(d, "maildir")
        (us, milterUs), rate, total = measure(groups, port, send, args, shape, maildir)
        files = [os.path.join(maildir, "new", x) for x in os.listdir(os.path.join(maildir, "new"))]
        assert len(files) == total, (len(files), total)
        if mode == "on":
            head = lastHead(files)
            assert MARKERS[workload] in head, head[:1500]
        return us + milterUs, rate, milterUs
    except Exception:
        with open(os.path.join(d, "maillog"), errors="replace") as f:
            print(f"opendkim: {'none' if opendkim is None else opendkim.poll()}; postfix's log, its warnings:", *[x for x in f if "warning" in x or "milter" in x][-20:],
                  sep="\n", file=sys.stderr)
        raise
    finally:
        subprocess.run(["postfix", "-c", f"{d}/etc", "stop"], capture_output=True)
        if opendkim:
            opendkim.terminate()
            opendkim.wait(10)
            log.close()
        group.empty()
        milterGroup.empty()


def _uid(name):
    import pwd
    return pwd.getpwnam(name).pw_uid


def portOpen(port):
    import socket
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def waitFor(test, what, process=None, timeout=20):
    deadline = time.monotonic() + timeout
    while not test():
        if time.monotonic() > deadline or process is not None and process.poll() is not None:
            raise RuntimeError(what)
        time.sleep(0.05)


def makeCert(scratch):
    """One self-signed ECDSA P-256 certificate for both servers' STARTTLS."""
    cert, key = os.path.join(scratch, "cert.pem"), os.path.join(scratch, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "30", "-subj", "/CN=mx.peer.test"],
                   check=True, capture_output=True)
    os.chmod(key, 0o600)
    return cert, key


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=500)
    p.add_argument("--sessions", type=int, default=4)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--shapes", default=",".join(SHAPES))
    p.add_argument("--only", default=",".join(WORKLOADS))
    p.add_argument("--milter", choices=("unix", "inet"), default="unix")
    p.add_argument("--opendkim-dns", choices=("keys-file", "unbound"), default="keys-file",
                   help="where OpenDKIM finds public keys to verify: a TestPublicKeys file, or the test DNS server")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory (logs, Maildirs)")
    args = p.parse_args()
    shapes, workloads = args.shapes.split(","), args.only.split(",")
    assert all(s in SHAPES for s in shapes) and all(w in WORKLOADS for w in workloads), (shapes, workloads)
    if os.geteuid() != 0:
        raise SystemExit("needs root: cgroups and a private Postfix")
    scratch = tempfile.mkdtemp(prefix="mailauth-peer-")
    os.chmod(scratch, 0o755)  # Postfix's unprivileged daemons walk below it
    groups = []
    dns = None
    try:
        keyDir, zone = makeKeys(scratch)
        cert, key = makeCert(scratch)
        dns = ZoneServer(scratch, zone)
        ctx = dict(scratch=scratch, keyDir=keyDir, zone=zone, signed=signedMessage(keyDir), dnsPort=dns.port, cert=cert, key=key)
        tag = f"mailauth-peer-{os.getpid()}"
        groups = [Cgroup(f"{tag}-mailnet"), Cgroup(f"{tag}-postfix"), Cgroup(f"{tag}-opendkim")]
        runners = {"mailnet": (groups[:1], runMailnet), "postfix": (groups[1:], runPostfix)}
        results = {}
        loads = [os.getloadavg()[0]]
        print(f"message: {len(ctx['signed'])} bytes signed ({len(message(0))} before); {args.messages} messages over "
              f"{args.sessions} clients per measurement; milter socket {args.milter}; load average "
              f"{os.getloadavg()[0]:.1f}", flush=True)
        order = [("mailnet", "off"), ("postfix", "off"), ("mailnet", "on"), ("postfix", "on")]
        for n in range(args.repeat):
            for shape in shapes:
                for w in workloads:
                    for server, mode in order if n % 2 == 0 else order[::-1]:
                        cgroups, runner = runners[server]
                        us, rate, milterUs = runner(cgroups, w, mode, shape, ctx, args, n)
                        results.setdefault((shape, w, server, mode), []).append(us)
                        if milterUs is not None and mode == "on":
                            results.setdefault((shape, w, "opendkim"), []).append(milterUs)
                        print(f"  {shape:10} {w:12} {server:7} {mode:3} round {n + 1}: {us:6.0f} µs CPU/msg"
                              + (f" ({milterUs:4.0f} in opendkim)" if mode == "on" and milterUs is not None else "")
                              + f", {rate:5.0f} msg/s (load {os.getloadavg()[0]:.1f})", flush=True)
            loads.append(os.getloadavg()[0])
    finally:
        if dns:
            dns.stop()
        for group in groups:
            group.remove()
        if args.keep:
            print(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"\nmedians of {args.repeat} rounds of {args.messages} messages over {args.sessions} clients; "
          f"load average (1 min) {min(loads):.1f} to {max(loads):.1f}; CPU µs per message of all the server's processes")
    print("| shape | workload | Postfix off | on | on/off | extra µs | of which opendkim |"
          " mailnet off | on | on/off | extra µs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for shape in shapes:
        for w in workloads:
            row = [shape, w + (" (mailnet: SPF+DKIM+DMARC)" if w == "verify" else "")]
            for server in ("postfix", "mailnet"):
                off = statistics.median(results[(shape, w, server, "off")])
                on = statistics.median(results[(shape, w, server, "on")])
                row += [f"{off:.0f}", f"{on:.0f}", f"{on / off:.2f}", f"{on - off:.0f}"]
                if server == "postfix":
                    row.append(f"{statistics.median(results[(shape, w, 'opendkim')]):.0f}")
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
