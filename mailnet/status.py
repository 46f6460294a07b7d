"""
``mailnet status``: what an administrator checks first.

* each configured listener, and whether it answers a TCP connect (on
  127.0.0.1, or ::1 for a tcp6 listener; a unix socket at its path), using
  the port a running server wrote to ``run/listeners.json`` (port 0 in a
  config means "any", so the config alone cannot say);
* the queue: items, held, recipients waiting, corrupt items, age of the
  oldest (through the running server's control socket, or the spool files);
* the store: its mail directory can be listed and written (the built-in
  maildir backend; others are not checked from outside the server);
* the certificates' days to expiry.

Exit status 0 when everything is fine, 1 when something is wrong (a
listener down, the store unreachable, corrupt queue items, a certificate
expired or expiring within ``tls.WARN_DAYS`` days).  Works whether the
server runs or not; it never starts one.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import time

CONNECT_TIMEOUT = 3.0


def _running(config) -> dict:
    """Listener name -> bound port, from run/listeners.json of a live server."""
    path = os.path.join(config.runDir, "listeners.json")
    try:
        with open(path) as f:
            info = json.load(f)
        pid = int(info.get("pid"))
        os.kill(pid, 0)
    except (OSError, ValueError, TypeError, AttributeError):
        return {}
    return {name: value.get("port") for name, value in (info.get("listeners") or {}).items()
            if isinstance(value, dict)}


def _target(description, bound):
    """(family, address, shown) to connect to for an endpoint description."""
    from twisted.internet import endpoints

    kind = description.split(":", 1)[0]
    args, kwargs = endpoints._parseServer(description, None)[1:]
    if kind == "unix":
        return socket.AF_UNIX, args[0], args[0]
    port = bound if bound else args[0]
    interface = kwargs.get("interface") or ""
    host = "::1" if kind == "tcp6" or ":" in interface else "127.0.0.1"
    return (socket.AF_INET6 if host == "::1" else socket.AF_INET), (host, port), f"{host} port {port}"


def answers(family, address, timeout=CONNECT_TIMEOUT) -> bool:
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(address)
        return True
    except OSError:
        return False
    finally:
        s.close()


def listeners(config):
    """[(name, shown, state)] with state "up", "down" or "off"."""
    bound = _running(config)
    out = []
    for name, description in vars(config.listen).items():
        if not description:
            out.append((name, "", "off"))
            continue
        family, address, shown = _target(description, bound.get(name))
        if family != socket.AF_UNIX and not address[1]:
            out.append((name, "any port (port 0): no server running", "down"))
            continue
        out.append((name, shown, "up" if answers(family, address) else "down"))
    return out


def queueSummary(config, now=None) -> dict:
    from mailnet.queue import control

    now = time.time() if now is None else now
    if not os.path.isdir(config.spoolDir):
        return {"items": 0, "held": 0, "waiting": 0, "corrupt": 0, "oldest": None}
    items = control.run(config, "list")
    summary = {"items": 0, "held": 0, "waiting": 0, "corrupt": 0, "oldest": None}
    for envelope in items:
        if "corrupt" in envelope:
            summary["corrupt"] += 1
            continue
        summary["items"] += 1
        summary["held"] += bool(envelope.get("held"))
        summary["waiting"] += sum(1 for r in envelope.get("recipients", []) if r.get("status") in ("pending", "delayed"))
        arrival = envelope.get("arrival")
        if isinstance(arrival, (int, float)):
            age = max(0.0, now - arrival)
            summary["oldest"] = age if summary["oldest"] is None else max(summary["oldest"], age)
    return summary


def storeState(config) -> tuple[bool | None, str]:
    """(reachable: True/False/None for not checked, why)."""
    from mailnet.http.metrics import directoryProblem

    backend = config.store.backend
    if backend != "maildir":
        return None, f"{backend}: not checked from outside the server"
    if not os.path.exists(config.mailDir):
        return None, "no mail directory yet (made at the first delivery)"
    problem = directoryProblem(config.mailDir)
    return (problem is None), (problem or "reachable")


def certificates(config, now=None):
    """[(label, days left or None, problem or "")]."""
    from cryptography import x509

    from mailnet import tls

    now = now or datetime.datetime.now(datetime.timezone.utc)
    out = []
    for certLabel, _, certFile, _ in tls.certificatePairs(config):
        if not os.path.exists(certFile):
            out.append((certLabel, None, "not made yet (made at start)"))
            continue
        try:
            with open(certFile, "rb") as f:
                leaf = x509.load_pem_x509_certificates(f.read())[0]
        except (OSError, ValueError) as e:
            out.append((certLabel, None, f"unreadable ({getattr(e, 'strerror', None) or type(e).__name__})"))
            continue
        days = (leaf.not_valid_after_utc - now).total_seconds() / 86400
        problem = "expired" if days <= 0 else (f"expires within {tls.WARN_DAYS} days" if days < tls.WARN_DAYS else "")
        out.append((certLabel, int(days), problem))
    return out


def _age(seconds):
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def report(config, out) -> int:
    """Print the status; return the exit status (0 fine, 1 something is wrong)."""
    wrong = []
    out.write("listeners:\n")
    for name, shown, state in listeners(config):
        out.write(f"  {name:12} {state:5} {shown}\n")
        if state == "down":
            wrong.append(f"listener {name} is down")
    try:
        q = queueSummary(config)
    except Exception as e:  # AdminError, OSError: one line
        out.write(f"queue: unknown ({getattr(e, 'strerror', None) or e})\n")
        wrong.append("the queue cannot be read")
    else:
        out.write(f"queue: {q['items']} item(s), {q['held']} held, {q['waiting']} recipient(s) waiting, "
                  f"{q['corrupt']} corrupt, oldest {_age(q['oldest'])}\n")
        if q["corrupt"]:
            wrong.append(f"{q['corrupt']} corrupt queue item(s) set aside")
    reachable, why = storeState(config)
    out.write(f"store: {why}\n")
    if reachable is False:
        wrong.append("the store is not reachable")
    for label, days, problem in certificates(config):
        left = f"{days} day(s) left" if days is not None else ""
        out.write(f"certificate {label}: {', '.join(x for x in (left, problem) if x)}\n")
        if problem and days is not None:
            wrong.append(f"certificate {label} {problem}")
    if wrong:
        out.write("PROBLEMS: " + "; ".join(wrong) + "\n")
        return 1
    out.write("ok\n")
    return 0
