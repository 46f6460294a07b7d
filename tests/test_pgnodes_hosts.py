"""
The node addresses of tests/pgnodes.py: network namespaces joined by veth
pairs (as root), loopback addresses otherwise; everything made is removed,
also when the test using them fails, and namespaces of a test process that
died before its teardown are removed by the next one.  Fast: no mailnet.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from tests import pgnodes

canMakeNamespaces = (os.geteuid() == 0 and pgnodes.shutil.which("ip") is not None
                     and os.environ.get("MAILNET_TEST_NETNS", "1") != "0")


def namespaces():
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def connectFrom(hosts, i, address, port):
    """Connect from node i's place (its namespace) to address:port: the local address used, or the error."""
    code = ("import socket, sys\n"
            "try:\n"
            "    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)\n"
            "    print(c.getsockname()[0])\n"
            "except OSError as e:\n"
            "    print('error', e.errno)\n")
    return subprocess.run(hosts.prefix(i) + [sys.executable, "-c", code, address, str(port)],
                          capture_output=True, text=True, timeout=30).stdout.strip()


@pytest.mark.skipif(not canMakeNamespaces, reason="needs root and iproute2, and MAILNET_TEST_NETNS not 0 (elsewhere the loopback fallback runs)")
def test_each_node_has_a_namespace_of_its_own_and_all_of_it_goes_away():
    hosts = pgnodes.NodeHosts(3).setup()
    try:
        assert hosts.isolated and len(set(hosts.addresses)) == 3
        assert all(a.startswith("10.200.") and a.endswith(".2") for a in hosts.addresses)
        listener = socket.socket()
        listener.bind((hosts.gateway, 0))
        listener.listen(5)
        port = listener.getsockname()[1]
        # Every node reaches the test's own address, from its own address ...
        assert [connectFrom(hosts, i, hosts.gateway, port) for i in range(3)] == hosts.addresses
        # ... and not what listens on the host's loopback: its 127.0.0.1 is its own.
        loop = socket.socket()
        loop.bind(("127.0.0.1", 0))
        loop.listen(5)
        assert connectFrom(hosts, 1, "127.0.0.1", loop.getsockname()[1]).startswith("error")
        listener.close()
        loop.close()
        made = list(hosts.namespaces)
        assert all(name in namespaces() for name, _ in made)
    finally:
        hosts.teardown()
    listed = namespaces()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    for name, veth in made:  # the namespaces and the veth pairs are gone
        assert name not in listed and f" {veth}@" not in links, (name, veth)


@pytest.mark.skipif(not canMakeNamespaces, reason="needs root and iproute2, and MAILNET_TEST_NETNS not 0")
def test_the_namespaces_of_a_test_process_that_died_are_removed():
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    name = f"{pgnodes.NS_PREFIX}{dead}-0"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        hosts = pgnodes.NodeHosts(1).setup()
        hosts.teardown()
        assert name not in namespaces()
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_without_namespaces_the_nodes_get_loopback_addresses(monkeypatch):
    monkeypatch.setenv("MAILNET_TEST_NETNS", "0")
    hosts = pgnodes.NodeHosts(3).setup()
    try:
        assert not hosts.isolated and hosts.addresses == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        assert hosts.gateway == "127.0.0.1" and hosts.prefix(0) == []
        listener = socket.socket()
        listener.bind((hosts.addresses[2], 0))
        listener.listen(1)
        with socket.create_connection(listener.getsockname(), timeout=3) as c:
            assert c.getpeername()[0] == "127.0.0.4"
        listener.close()
    finally:
        hosts.teardown()
