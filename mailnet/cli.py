"""
The ``mailnet`` command.

    mailnet [--config FILE] run                      start the server in the foreground
    mailnet [--config FILE] user add|passwd|del|list ...
    mailnet [--config FILE] alias add|del|list ...
    mailnet [--config FILE] queue ...                 (see ``mailnet queue --help``)
    mailnet config check [FILE]                       validate a config file
    mailnet config example                            print etc/mailnet.toml
    mailnet [--config FILE] cert make [--force]       (re)make the self-signed certificate

Without ``--config`` (or ``$MAILNET_CONFIG``) the development defaults are
used, rooted at ./var.  Changes to users and aliases take effect on a running
server at once.  Errors print one line and exit with status 2 (usage, config)
or 1 (the operation failed).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from mailnet import config as configmod


def _die(message, status=1):
    print(f"mailnet: {message}", file=sys.stderr)
    raise SystemExit(status)


def _load(args, checkFiles=True):
    try:
        return configmod.load(args.config, checkFiles=checkFiles)
    except configmod.ConfigError as e:
        _die(str(e), 2)


def _readPassword(given):
    if given not in (None, "-"):
        return given
    if given is None and sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Again: "):
            _die("the passwords differ")
        password = first
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        _die("empty password")
    return password


def _users(conf):
    from mailnet import auth

    return auth.UserDB(conf.usersFile, conf.auth.hash, 0)


def _aliases(conf):
    from mailnet import auth

    return auth.AliasDB(conf.aliasesFile)


def cmdRun(args):
    from mailnet import tap

    # Our service maker goes to twistd's runner directly: `mailnet run` does
    # not depend on twistd finding the plugin (which some install modes hide).
    # Our observer writes twistd's usual lines to stdout, more cheaply.
    argv = ["--nodaemon", "--pidfile=", "--logger=mailnet.logs.twistdObserver", "mailnet"]
    if args.config:
        argv += ["--config", args.config]
    tap.runTwistd(argv)


def cmdUser(args):
    conf = _load(args)
    users = _users(conf)
    if args.action == "list":
        for name in users.list():
            print(name)
        return
    if not args.name:
        _die(f"user {args.action}: which user?", 2)
    try:
        if args.action == "add":
            from mailnet.auth import splitAddress

            domain = splitAddress(args.name)[1]
            if domain and domain not in conf.domains.local:
                print(f"mailnet: warning: {domain} is not in [domains] local; the user can log in but gets no mail", file=sys.stderr)
            users.add(args.name, _readPassword(args.password))
            print(f"added {args.name.lower()}")
        elif args.action == "passwd":
            users.setPassword(args.name, _readPassword(args.password))
            print(f"changed the password of {args.name.lower()}")
        elif args.action == "del":
            users.remove(args.name)
            print(f"removed {args.name.lower()} (their mail is kept under {conf.mailDir})")
    except (ValueError, KeyError) as e:
        _die(e.args[0] if e.args else str(e))


def cmdAlias(args):
    conf = _load(args)
    aliases = _aliases(conf)
    try:
        if args.action == "list":
            for name, targets in aliases.list().items():
                print(f"{name}: {', '.join(targets)}")
        elif args.action == "add":
            if not args.address or not args.targets:
                _die("alias add ADDRESS TARGET [TARGET...]", 2)
            aliases.add(args.address, args.targets)
            print(f"{args.address.lower()}: {', '.join(args.targets)}")
        elif args.action == "del":
            if not args.address:
                _die("alias del ADDRESS", 2)
            aliases.remove(args.address)
            print(f"removed {args.address.lower()}")
    except (ValueError, KeyError) as e:
        _die(e.args[0] if e.args else str(e))


def cmdConfig(args):
    if args.action == "example":
        sys.stdout.write(configmod.example())
        return
    path = args.file or args.config
    try:
        configmod.load(path)
    except configmod.ConfigError as e:
        _die(str(e), 2)
    print(f"{path or '<defaults>'}: ok")


def cmdCert(args):
    from mailnet import tls

    conf = _load(args)
    if conf.tls.cert:
        _die("[tls] cert is configured; mailnet only makes its own self-signed pair when it is not", 2)
    if os.path.exists(conf.certFile) and not args.force:
        _die(f"{conf.certFile} exists; use --force to replace it")
    tls.makeSelfSigned(conf.certFile, conf.keyFile, conf.server.hostname)
    print(f"made {conf.certFile} and {conf.keyFile} for {conf.server.hostname}")


def cmdQueue(args, rest):
    from mailnet.service import optionalModule

    module = optionalModule("mailnet.queue.cli")
    if module is None:
        _die("the queue commands are not part of this build yet", 2)
    return module.main(_load(args), rest)


def parser():
    p = argparse.ArgumentParser(prog="mailnet", description="mailnet mail server")
    p.add_argument("--config", "-c", default=os.environ.get("MAILNET_CONFIG") or None,
                   help="TOML config file (default: development defaults under ./var)")
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("run", help="run the server in the foreground")

    u = sub.add_parser("user", help="manage users")
    u.add_argument("action", choices=["add", "passwd", "del", "list"])
    u.add_argument("name", nargs="?")
    u.add_argument("password", nargs="?", help="the password; omitted or '-' reads it from stdin")

    a = sub.add_parser("alias", help="manage aliases (@domain is a catch-all)")
    a.add_argument("action", choices=["add", "del", "list"])
    a.add_argument("address", nargs="?")
    a.add_argument("targets", nargs="*")

    c = sub.add_parser("config", help="check a config file or print the documented example")
    c.add_argument("action", choices=["check", "example"])
    c.add_argument("file", nargs="?")

    t = sub.add_parser("cert", help="make the self-signed development certificate")
    t.add_argument("action", choices=["make"])
    t.add_argument("--force", action="store_true")

    sub.add_parser("queue", help="list, show, flush, delete, hold, release queued mail", add_help=False)
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    p = parser()
    args, rest = p.parse_known_args(argv)
    if args.command == "queue":
        return cmdQueue(args, rest)
    if rest:
        p.error(f"unrecognized arguments: {' '.join(rest)}")
    handler = {"run": cmdRun, "user": cmdUser, "alias": cmdAlias, "config": cmdConfig, "cert": cmdCert}[args.command]
    return handler(args)


if __name__ == "__main__":
    main()
