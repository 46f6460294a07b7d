"""
A test DNS server (twisted.names) for the queue's end-to-end tests.

    python tests/queue/dnsserver.py ZONE.json

serves, on 127.0.0.1 (UDP and TCP, one port the kernel picks), the records
of ZONE.json::

    {"remote.test": {"MX": [[10, "mx.remote.test"]], "TXT": ["v=spf1 mx -all"]},
     "mx.remote.test": {"A": ["127.0.0.1"]},
     "nullmx.test": {"MX": [[0, ""]]}}

(TXT: one record per string.)  An optional second argument is the port
(53 inside a test's own network namespace).

A name not in the zone is NXDOMAIN; a name without records of the asked
type gets an empty answer (NODATA).  Prints ``PORT <n>`` once listening.
"""

import json
import sys

from twisted.internet import defer, reactor
from twisted.names import common, dns, error, server


class ZoneResolver(common.ResolverBase):
    def __init__(self, zone):
        super().__init__()
        self.zone = {name.lower().rstrip("."): records for name, records in zone.items()}

    def _lookup(self, name, cls, type, timeout):
        key = name.decode() if isinstance(name, bytes) else str(name)
        key = key.lower().rstrip(".")
        if key not in self.zone:
            return defer.fail(error.DomainError(name))
        records = self.zone[key]
        answers = []
        for value in records.get(dns.QUERY_TYPES.get(type, ""), []):
            if type == dns.MX:
                payload = dns.Record_MX(value[0], value[1], ttl=60)
            elif type == dns.A:
                payload = dns.Record_A(value, ttl=60)
            elif type == dns.AAAA:
                payload = dns.Record_AAAA(value, ttl=60)
            elif type == dns.TXT:  # one record; a long value in strings of 255 (RFC 7208 s3.3)
                data = value.encode()
                payload = dns.Record_TXT(*[data[i:i + 255] for i in range(0, len(data), 255)], ttl=60)
            else:
                continue
            answers.append(dns.RRHeader(name, type, cls, 60, payload, auth=True))
        return defer.succeed((answers, [], []))


def main(path, port=0):
    with open(path) as f:
        zone = json.load(f)
    factory = server.DNSServerFactory(authorities=[ZoneResolver(zone)])
    udp = reactor.listenUDP(port, dns.DNSDatagramProtocol(factory), interface="127.0.0.1")
    port = udp.getHost().port
    reactor.listenTCP(port, factory, interface="127.0.0.1")
    print(f"PORT {port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0)
