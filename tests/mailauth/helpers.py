"""
Helpers for the mail authentication tests: the test DNS server of
tests/queue (twisted.names, now with TXT records) serving a zone we give,
and running the independent DKIM verifiers against it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DNSSERVER = os.path.join(ROOT, "tests", "queue", "dnsserver.py")


class ZoneServer:
    """tests/queue/dnsserver.py serving ``zone`` on 127.0.0.1 (a port of its own)."""

    def __init__(self, directory, zone):
        self.path = os.path.join(str(directory), "zone.json")
        with open(self.path, "w") as f:
            json.dump(zone, f)
        self.process = subprocess.Popen([sys.executable, DNSSERVER, self.path], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        line = self.process.stdout.readline()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"test DNS server did not start: {line}{self.process.stdout.read()}")
        self.port = int(line.split()[1])

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def txtOf(keygenOutput: str) -> tuple[str, str]:
    """(name, value) of the record `mailnet dkim keygen` printed."""
    line = [x for x in keygenOutput.splitlines() if " IN TXT " in x][0]
    name = line.split()[0].rstrip(".")
    value = "".join(part for part in line.split('"')[1::2])
    return name, value


# Mail::DKIM's own verifier script (dkimverify.pl upstream; Debian installs it
# as dkimproxy-verify), with its resolver pointed at our test DNS server.
PERL_VERIFY = r"""
use strict; use warnings;
use Net::DNS::Resolver; use Mail::DKIM::Verifier;
my $port = shift;
Mail::DKIM::DNS::resolver(Net::DNS::Resolver->new(nameservers => ['127.0.0.1'], port => $port,
                                                  recurse => 1, udp_timeout => 5, tcp_timeout => 5));
my $dkim = Mail::DKIM::Verifier->new();
while (<STDIN>) { chomp; s/\015$//; $dkim->PRINT("$_\015\012"); }
$dkim->CLOSE;
foreach my $signature ($dkim->signatures) {
    print "signature " . $signature->domain . " " . ($signature->algorithm) . " " . $signature->result_detail . "\n";
}
print "result: " . $dkim->result . "\n";
"""


def mailDKIMVerify(message: bytes, dnsPort: int) -> str:
    """Mail::DKIM's verdict on ``message`` (its output)."""
    done = subprocess.run(["perl", "-e", PERL_VERIFY, str(dnsPort)], input=message, capture_output=True,
                          timeout=60)
    return done.stdout.decode() + done.stderr.decode()


def haveMailDKIM() -> bool:
    return subprocess.run(["perl", "-MMail::DKIM::Verifier", "-MNet::DNS", "-e", "1"],
                          capture_output=True).returncode == 0


OPENDKIM_SCRIPT = r"""
set -e
ip link set lo up
printf 'nameserver 127.0.0.1\n' > "$WORK/resolv.conf"
mount --bind "$WORK/resolv.conf" /etc/resolv.conf
"$PYTHON" "$DNSSERVER" "$ZONE" 53 > "$WORK/dns.out" 2>&1 &
dns=$!
for i in $(seq 100); do grep -q PORT "$WORK/dns.out" 2>/dev/null && break; sleep 0.1; done
set +e
opendkim-testmsg < "$MESSAGE"
status=$?
kill $dns
echo "opendkim-testmsg status $status"
"""


def opendkimProblem() -> str | None:
    """Why opendkim-testmsg cannot be run here, or None."""
    if shutil.which("opendkim-testmsg") is None and not os.path.exists("/usr/sbin/opendkim-testmsg"):
        return "opendkim-testmsg (Debian opendkim-tools, in .ci/apt-packages) is not installed"
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return ("opendkim-testmsg asks the system resolver (port 53 of /etc/resolv.conf); the test gives it "
                "the test DNS server in a network and mount namespace of its own, which needs root and unshare")
    return None


def opendkimVerify(message: bytes, zonePath: str, work: str) -> str:
    """
    opendkim-testmsg's verdict on ``message`` (its output and exit status),
    run in a network namespace of its own whose /etc/resolv.conf names the
    test DNS server on 127.0.0.1:53 (libopendkim uses the C resolver, which
    has no port setting).
    """
    path = os.path.join(work, "message.eml")
    with open(path, "wb") as f:
        f.write(message)
    env = dict(os.environ, WORK=work, PYTHON=sys.executable, DNSSERVER=DNSSERVER, ZONE=zonePath, MESSAGE=path,
               PATH=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    done = subprocess.run(["unshare", "--net", "--mount", "sh", "-c", OPENDKIM_SCRIPT], env=env,
                          capture_output=True, timeout=60)
    return done.stdout.decode() + done.stderr.decode()
