"""MX resolution (RFC 5321 s5.1, RFC 7505) against an in-memory DNS."""

from mailnet.errors import DeliveryError
from mailnet.queue.mx import MXResolver
from tests.queue.fakes import FakeResolver, seeded

ZONE = {
    "remote.test": {"MX": [(20, "mx2.remote.test"), (10, "mx1.remote.test")]},
    "mx1.remote.test": {"A": ["127.0.0.1"], "AAAA": ["::1"]},
    "mx2.remote.test": {"A": ["127.0.0.1"]},
    "equal.test": {"MX": [(10, f"mx{i}.equal.test") for i in range(4)]},
    **{f"mx{i}.equal.test": {"A": ["127.0.0.1"]} for i in range(4)},
    "nomx.test": {"A": ["127.0.0.1"]},
    "nothing.test": {},
    "nullmx.test": {"MX": [(0, "")]},
    "dangling.test": {"MX": [(10, "gone.dangling.test")]},
    "slowmx.test": {"MX": [(10, "slow.slowmx.test")]},
}


def resolve(domain, zone=ZONE, failing=(), rng=None):
    r = MXResolver(FakeResolver(zone, failing), rng=rng or seeded(), hostsFile=None)
    out = []
    r.hostsFor(domain).addBoth(out.append)
    return out[0]


def failure(result):
    assert hasattr(result, "value"), result
    assert isinstance(result.value, DeliveryError)
    return result.value


def test_preference_order_and_addresses():
    hosts = resolve("Remote.TEST.")
    assert [(h.name, h.preference, h.addresses) for h in hosts] == [
        ("mx1.remote.test", 10, ["127.0.0.1", "::1"]), ("mx2.remote.test", 20, ["127.0.0.1"])]


def test_equal_preferences_are_shuffled():
    orders = {tuple(h.name for h in resolve("equal.test", rng=__import__("random").Random(seed))) for seed in range(20)}
    assert len(orders) > 1
    assert all(sorted(o) == [f"mx{i}.equal.test" for i in range(4)] for o in orders)


def test_implicit_mx_when_no_mx():
    [host] = resolve("nomx.test")
    assert (host.name, host.preference, host.addresses) == ("nomx.test", 0, ["127.0.0.1"])


def test_no_mx_no_address_fails_permanently():
    e = failure(resolve("nothing.test"))
    assert e.permanent and e.enhanced == "5.1.2"


def test_nxdomain_fails_permanently():
    e = failure(resolve("nosuch.test"))
    assert (e.code, e.enhanced, e.permanent) == (550, "5.1.2", True)


def test_null_mx_fails_at_once():
    e = failure(resolve("nullmx.test"))
    assert (e.code, e.enhanced, e.permanent) == (556, "5.1.10", True)


def test_dns_timeout_is_temporary():
    e = failure(resolve("remote.test", failing={"remote.test"}))
    assert e.temporary and e.enhanced == "4.4.3"


def test_mx_without_address_is_temporary():
    e = failure(resolve("dangling.test"))
    assert e.temporary and e.enhanced == "4.4.4"


def test_mx_host_lookup_timeout_is_temporary():
    e = failure(resolve("slowmx.test", failing={"slow.slowmx.test"}))
    assert e.temporary


def test_domain_literal():
    [host] = resolve("[127.0.0.1]")
    assert host.addresses == ["127.0.0.1"]
    [host] = resolve("[IPv6:::1]")
    assert host.addresses == ["::1"]


def test_smarthost_by_ip_and_name():
    r = MXResolver(FakeResolver({"relay.test": {"A": ["127.0.0.1"]}}), hostsFile=None)
    out = []
    r.hostFor("127.0.0.1:2525").addBoth(out.append)
    r.hostFor("relay.test:587").addBoth(out.append)
    assert out[0][0] == 2525 and out[0][1][0].addresses == ["127.0.0.1"]
    assert out[1][0] == 587 and out[1][1][0].name == "relay.test"


def test_hosts_file_consulted_for_addresses(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 relay.local\n")
    r = MXResolver(FakeResolver({}), hostsFile=str(hosts).encode())
    out = []
    r.hostFor("relay.local:25").addBoth(out.append)
    assert out[0][1][0].addresses == ["127.0.0.1"]
