"""
``mailnet dkim keygen DOMAIN [--selector S] [--algorithm rsa|ed25519] [--force]``
``mailnet dns DOMAIN``, ``mailnet tlsrpt show`` and ``mailnet dmarc show|report``.
"""

from __future__ import annotations

import sys

from mailnet.mailauth import keys as keysmod, records


def keygen(conf, domain, selector=None, algorithm="rsa", force=False):
    """Make a key, store it 0600 under data_dir/dkim, print the TXT record. Returns the exit status."""
    try:
        domain = keysmod.checkDomain(domain)
        selector = keysmod.checkSelector(selector or keysmod.defaultSelector(algorithm))
        path, public = keysmod.make(conf.server.data_dir, domain, selector, algorithm, force=force)
    except FileExistsError:
        print(f"mailnet: a {algorithm} key with selector {selector} exists for {domain}; "
              f"use --force to replace it, or --selector NEW", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"mailnet: {e}", file=sys.stderr)
        return 2
    if domain not in conf.domains.local:
        print(f"mailnet: warning: {domain} is not in [domains] local", file=sys.stderr)
    print(f"; made {algorithm} key {selector} for {domain}: {path}")
    print("; publish this record; mail from the domain is signed with it from now on")
    print(keysmod.txtRecord(domain, selector, algorithm, public))
    return 0


def dns(conf, domain):
    try:
        lines = records.records(conf, domain)
    except ValueError as e:
        print(f"mailnet: {e}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


def tlsrptShow(conf):
    """``mailnet tlsrpt show``: the TLS results not reported yet."""
    from mailnet.mailauth import tlsrpt

    return tlsrpt.show(conf, sys.stdout)


def dmarc(conf, action, day=None, now=False):
    """``mailnet dmarc show [DAY]`` and ``mailnet dmarc report --now``."""
    from mailnet.mailauth import dmarcrows

    if action == "show":
        return dmarcrows.show(conf, sys.stdout, day)
    if not now:
        print("mailnet: dmarc report: reports are sent daily by the server; --now sends them at once", file=sys.stderr)
        return 2
    if not (conf.mailauth.inbound and conf.mailauth.dmarc_reports):
        print("mailnet: DMARC reports are off ([mailauth] inbound and dmarc_reports)", file=sys.stderr)
        return 1
    from mailnet.queue import control

    try:
        answer = control.ask(control.socketPath(conf), "dmarc-report", timeout=300)
    except (ConnectionError, OSError):
        print("mailnet: the server does not run (or its queue control socket does not answer); "
              "the reports are sent by the server", file=sys.stderr)
        return 1
    if not answer.get("ok"):
        print(f"mailnet: {answer.get('error') or 'failed'}", file=sys.stderr)
        return 1
    n = (answer.get("result") or {}).get("reports") or 0
    print(f"{n} DMARC report{'s' if n != 1 else ''} queued")
    return 0
