"""
``mailnet queue``: look at and act on the outbound queue.

    mailnet queue list [--json]        every item, its recipients and their status
    mailnet queue show ID [--json]     one item: envelope and message header
    mailnet queue flush [ID]           try now (every item, or one); held items stay
    mailnet queue delete ID            remove an item, without a bounce
    mailnet queue hold ID              stop delivering an item until released
    mailnet queue release ID           deliver a held item again (at its next time; flush to go now)

Works whether the server runs or not (see :mod:`mailnet.queue.control`).
A damaged item is one line (``ID  CORRUPT: reason``) and never hides the
rest of the queue.
Exit status: 0 done, 1 the command failed (no such item, a corrupt item
for show/hold/release, flush could not flush some items), 2 usage.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys

from mailnet.queue import control


def _when(epoch):
    if epoch is None:
        return "-"
    try:
        return datetime.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")
    except (ValueError, OverflowError, OSError, TypeError):
        return str(epoch)


def _parser():
    p = argparse.ArgumentParser(prog="mailnet queue", description="Look at and act on the outbound queue.")
    sub = p.add_subparsers(dest="action", required=True)
    lst = sub.add_parser("list", help="list the queue")
    lst.add_argument("--json", action="store_true", help="print the envelopes as JSON")
    show = sub.add_parser("show", help="show one item")
    show.add_argument("id")
    show.add_argument("--json", action="store_true", help="print the envelope as JSON")
    flush = sub.add_parser("flush", help="try now")
    flush.add_argument("id", nargs="?")
    for name, text in (("delete", "remove an item (no bounce)"), ("hold", "stop delivering an item"),
                       ("release", "deliver a held item again")):
        sub.add_parser(name, help=text).add_argument("id")
    return p


def formatItem(envelope, out):
    if "corrupt" in envelope:
        out.write(f"{envelope.get('id')}  CORRUPT: {envelope['corrupt']}\n")
        return
    flags = " (held)" if envelope.get("held") else ""
    if envelope.get("node"):
        flags += f"  [node {envelope['node']}]"  # the shared queue: who delivers it
    sender = envelope.get("sender") or "<>"
    out.write(f"{envelope['id']}  {envelope.get('size', 0):>9}  {_when(envelope.get('arrival'))}  {sender}{flags}\n")
    for r in envelope.get("recipients", []):
        status = r.get("status")
        line = f"    {r['address']}  {status}"
        if status in ("pending", "delayed"):
            line += f"  attempts {r.get('attempts', 0)}  next {_when(r.get('next_attempt'))}"
        elif r.get("action"):
            line += f" ({r['action']})"
        out.write(line + "\n")
        if r.get("last_error"):
            where = f" [{r['remote_mta']}]" if r.get("remote_mta") else ""
            out.write(f"        {r['last_error']}{where}\n")


def main(config, argv):
    args = _parser().parse_args(argv)
    out = sys.stdout
    try:
        if args.action == "list":
            items = control.run(config, "list")
            if args.json:
                json.dump(items, out, indent=1, ensure_ascii=False)
                out.write("\n")
                return 0
            if not items:
                out.write("the queue is empty\n")
                return 0
            waiting = 0
            bad = 0
            for envelope in items:
                formatItem(envelope, out)
                if "corrupt" in envelope:
                    bad += 1
                    continue
                waiting += sum(1 for r in envelope.get("recipients", []) if r.get("status") in ("pending", "delayed"))
            note = f", {bad} corrupt (set aside, not delivered)" if bad else ""
            out.write(f"{len(items) - bad} item(s), {waiting} recipient(s) waiting{note}\n")
            return 0
        if args.action == "show":
            result = control.run(config, "show", args.id)
            if args.json:
                json.dump(result["envelope"], out, indent=1, ensure_ascii=False)
                out.write("\n")
                return 0
            env = result["envelope"]
            formatItem(env, out)
            for key in ("envid", "ret", "body", "smtputf8", "client", "auth", "delay_warned"):
                if env.get(key) not in (None, False):
                    out.write(f"  {key}: {env[key]}\n")
            out.write("\n" + result["header"])
            return 0
        if args.action == "flush":
            result = control.run(config, "flush", args.id)
            note = "" if result.get("server") else " (no server is running: they go when it starts)"
            out.write(f"flushed: {result['recipients']} recipient(s) due now{note}\n")
            errors = result.get("errors") or []
            for error in errors:
                print(f"mailnet: queue flush: {error}", file=sys.stderr)
            if errors:
                raise SystemExit(1)
            return 0
        control.run(config, args.action, args.id)
        past = {"delete": "deleted", "hold": "held", "release": "released"}[args.action]
        out.write(f"{past} {args.id}\n")
        return 0
    except control.AdminError as e:
        print(f"mailnet: queue {args.action}: {e}", file=sys.stderr)
        raise SystemExit(1)
    except OSError as e:
        # An unreadable spool directory, a full disk...: one line, no traceback.
        print(f"mailnet: queue {args.action}: {e.strerror or type(e).__name__}", file=sys.stderr)
        raise SystemExit(1)
