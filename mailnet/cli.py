"""
The ``mailnet`` command.

    mailnet run                          start the server in the foreground
    mailnet user add|passwd|del|list ...
    mailnet alias add|del|list ...
    mailnet migrate maildir-to-postgres USER...|--all
    mailnet queue ...                    (see ``mailnet queue --help``)
    mailnet config check [FILE]          validate a config file
    mailnet config example               print etc/mailnet.toml
    mailnet cert make [--force] [--new-ca]   (re)make the development certificates
    mailnet dkim keygen DOMAIN [--selector S] [--algorithm rsa|ed25519]
    mailnet dns DOMAIN                   the DNS records to publish for DOMAIN
    mailnet tlsrpt show                  TLS-RPT counts of our deliveries not reported yet
    mailnet dmarc show [DAY]             DMARC report rows of the mail we received, not reported yet
    mailnet dmarc report --now           send the DMARC reports due, today's so far included (server running)
    mailnet status                       listeners, queue, store, certificates (exit 1: a problem)
    mailnet db init|upgrade|status       the PostgreSQL store's schema ([store] backend = "postgres")
    mailnet db recount                   recount every account's quota usage from its messages
    mailnet db gc [--dry-run] [--grace S] remove bodies no message refers to (rows; S3 objects older than S)
    mailnet --version

``--config FILE`` goes before or after the command.  Without it (or
``$MAILNET_CONFIG``) the development defaults are used, rooted at ./var of
the current directory, and the command says so on stderr.  Only ``run``,
``user add`` and ``cert make`` create a missing data directory (saying so);
the other commands refuse with one line, and read-only ones create nothing.
Changes to users and aliases take effect on a running server at once.
Errors print one line and exit with status 2 (usage, config) or 1 (the
operation failed).
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


# (command, action) that may create a missing data directory; `run` makes
# its own (the server logs where its data is).
CREATES_DATA_DIR = {("user", "add"), ("cert", "make"), ("dkim", "keygen")}


def _checkDataDir(args):
    """
    Say which data directory a command works on when it is not obvious (the
    development default, or one about to be made), and refuse to make one
    for a command that should find it there (a wrong directory, most likely).
    """
    conf = _load(args, checkFiles=False)
    data = conf.server.data_dir
    creates = (args.command, getattr(args, "action", None)) in CREATES_DATA_DIR
    default = "the development data directory" if conf.source is None else "the data directory"
    hint = " (no --config given)" if conf.source is None else ""
    if os.path.isdir(data):
        if conf.source is None:
            print(f"mailnet: using {default} {data}{hint}", file=sys.stderr, flush=True)
        return
    if not creates:
        _die(f"no data directory {data}{hint}: nothing to work on; give --config FILE, "
             f"or start with `mailnet run` or `mailnet user add`")
    print(f"mailnet: creating {default} {data}{hint}", file=sys.stderr, flush=True)
    try:
        os.makedirs(data, mode=0o700)
    except OSError as e:
        _die(f"cannot create {data}: {e.strerror}")


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


def _directoryTables(conf):
    """``[auth] directory = "postgres"``: (users, aliases) over the database's tables."""
    from mailnet.config import ConfigError
    from mailnet.service import makeDirectoryTables

    try:
        return makeDirectoryTables(conf)
    except ConfigError as e:
        _die(str(e))


def _users(conf):
    from mailnet import auth

    if conf.auth.directory == "postgres":
        return _directoryTables(conf)[0]
    return auth.UserDB(conf.usersFile, conf.auth.hash, 0)


def _aliases(conf):
    from mailnet import auth

    if conf.auth.directory == "postgres":
        return _directoryTables(conf)[1]
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
            if conf.auth.directory != "postgres" and os.path.exists(conf.tokensFile):  # (the table: they go with the user)
                from mailnet.tokens import TokenDB

                TokenDB(conf.tokensFile).removeUser(args.name)  # a user made again later gets none of these
            where = "in the database" if conf.store.backend == "postgres" else f"under {conf.mailDir}"
            print(f"removed {args.name.lower()} (their mail is kept {where})")
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


def cmdToken(args):
    """App passwords (mailnet/tokens.py): the token is printed once, only its hash is kept."""
    import datetime

    from mailnet.tokens import TokenDB

    conf = _load(args)
    users = _users(conf)
    # [auth] directory = "postgres": the tokens table, shared by every node; else the file beside the users file.
    tokens = users.tokens if conf.auth.directory == "postgres" else TokenDB(conf.tokensFile)
    try:
        if not users.exists(args.user):
            _die(f"no user {args.user.lower()}")
        if args.action == "add":
            print(tokens.add(args.user, args.tokenName or args.name))
        elif args.action == "list":
            for name, created in tokens.list(args.user):
                when = datetime.datetime.fromtimestamp(int(created), datetime.timezone.utc)
                print(f"{name}  created {when:%Y-%m-%d %H:%M:%S} UTC")
        elif args.action == "revoke":
            if not args.name:
                _die("token revoke USER NAME", 2)
            tokens.revoke(args.user, args.name)
            print(f"revoked {args.name} of {args.user.lower()}")
    except (ValueError, KeyError) as e:
        _die(e.args[0] if e.args else str(e))


def cmdConfig(args):
    if args.action == "example":
        sys.stdout.write(configmod.example())
        return
    path = args.file or args.config
    try:
        conf = configmod.load(path)
        from mailnet import tls
        from mailnet.service import checkStore

        checkStore(conf)  # imports (and for a third-party backend makes) the store, as `run` will
        warnings = tls.checkCertificates(conf)  # pair, expiry, name (made at start when missing)
    except configmod.ConfigError as e:
        _die(str(e), 2)
    for warning in warnings:
        print(f"mailnet: warning: {warning}", file=sys.stderr)
    print(f"{path or '<defaults>'}: ok")


def cmdCert(args):
    from mailnet import tls

    conf = _load(args)
    if conf.tls.cert:
        _die("[tls] cert is configured; mailnet only makes its own development certificates when it is not", 2)
    if os.path.exists(conf.certFile) and not args.force:
        _die(f"{conf.certFile} exists; use --force to replace it")
    tls.makeDevelopmentCertificates(conf, newCA=args.new_ca)
    print(f"made {conf.certFile} (ECDSA) and {conf.rsaCertFile} (RSA) for {conf.server.hostname}, "
          f"localhost, 127.0.0.1 and ::1")
    print(f"clients trust the development CA: {conf.devCAFile}")


def cmdDkim(args):
    from mailnet.mailauth import cli

    return cli.keygen(_load(args), args.domain, args.selector, args.algorithm, args.force)


def cmdDns(args):
    from mailnet.mailauth import cli

    return cli.dns(_load(args), args.domain)


def cmdTlsrpt(args):
    from mailnet.mailauth import cli

    return cli.tlsrptShow(_load(args))


def cmdDmarc(args):
    from mailnet.mailauth import cli

    return cli.dmarc(_load(args), args.action, args.day, args.now)


def cmdQueue(args, rest):
    from mailnet.queue import cli

    conf = _load(args)
    if not os.path.isdir(conf.spoolDir):
        # Looking must not make the spool; the server makes it at start.
        _die(f"no queue in {conf.server.data_dir} yet (no server has run with this data directory)")
    return cli.main(conf, rest)


def cmdStatus(args):
    from mailnet import status

    return status.report(_load(args), sys.stdout)


def cmdDb(args):
    from mailnet.store.postgres import cli

    return cli.main(_load(args), args.action, dryRun=args.dry_run, grace=args.grace)


def cmdMigrate(args):
    """Copy Maildir accounts into the PostgreSQL store (mailnet/store/postgres/migrate.py)."""
    from mailnet.store.postgres import migrate

    if bool(args.all) == bool(args.users):
        _die("migrate maildir-to-postgres: give USER... or --all", 2)
    return migrate.main(_load(args), args.users, everyone=args.all, maildirRoot=args.maildir)


def _version():
    import platform

    import twisted

    from mailnet import __version__

    return f"mailnet {__version__} (Twisted {twisted.__version__}, Python {platform.python_version()})"


def parser():
    p = argparse.ArgumentParser(prog="mailnet", description="mailnet mail server")
    configHelp = "TOML config file (default: development defaults under ./var)"
    p.add_argument("--config", "-c", default=os.environ.get("MAILNET_CONFIG") or None, help=configHelp)
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True,
                           description="--config FILE may also follow the command (`mailnet run --config FILE`)")
    add_parser = sub.add_parser

    add_parser("run", help="run the server in the foreground")

    u = add_parser("user", help="manage users")
    u.add_argument("action", choices=["add", "passwd", "del", "list"])
    u.add_argument("name", nargs="?")
    u.add_argument("password", nargs="?", help="the password; omitted or '-' reads it from stdin")

    a = add_parser("alias", help="manage aliases (@domain is a catch-all)")
    a.add_argument("action", choices=["add", "del", "list"])
    a.add_argument("address", nargs="?")
    a.add_argument("targets", nargs="*")

    tk = add_parser("token", help="app passwords: bearer tokens for JMAP, also accepted as the user's password")
    tk.add_argument("action", choices=["add", "list", "revoke"])
    tk.add_argument("user")
    tk.add_argument("name", nargs="?", help="revoke: the token's name")
    tk.add_argument("--name", dest="tokenName", help="add: a name for the token (default: token-<random>)")

    c = add_parser("config", help="check a config file or print the documented example")
    c.add_argument("action", choices=["check", "example"])
    c.add_argument("file", nargs="?")

    t = add_parser("cert", help="make the development certificates (signed by data_dir/tls/dev-ca.pem)")
    t.add_argument("action", choices=["make"])
    t.add_argument("--force", action="store_true", help="replace existing certificates (the CA is kept)")
    t.add_argument("--new-ca", action="store_true", help="make a new development CA too")

    k = add_parser("dkim", help="make a DKIM key for a domain and print its DNS record")
    k.add_argument("action", choices=["keygen"])
    k.add_argument("domain")
    k.add_argument("--selector", help="the DNS selector (default: rsaYYYYMM or edYYYYMM)")
    k.add_argument("--algorithm", choices=["rsa", "ed25519"], default="rsa",
                   help="rsa (2048 bits, the default) or ed25519 (RFC 8463: a second signature beside rsa)")
    k.add_argument("--force", action="store_true", help="replace a key with the same selector")

    n = add_parser("dns", help="print the DNS records to publish for a domain (MX, SPF, DKIM, DMARC)")
    n.add_argument("domain")

    r = add_parser("tlsrpt", help="the TLS-RPT (RFC 8460) counts of our deliveries not reported yet")
    r.add_argument("action", choices=["show"])

    r = add_parser("dmarc", help="DMARC aggregate reports (RFC 7489 s7.2) of the mail we received: show the rows "
                                 "not reported yet, or send the reports now")
    r.add_argument("action", choices=["show", "report"])
    r.add_argument("day", nargs="?", help="show: only this UTC day (YYYY-MM-DD)")
    r.add_argument("--now", action="store_true", help="report: send every report due, today's rows so far included")

    add_parser("queue", help="list, show, flush, delete, hold, release queued mail", add_help=False)
    add_parser("status", help="listeners, queue, store and certificates at a glance; exit 1 when something is wrong")
    d = add_parser("db", help="make, upgrade or check the PostgreSQL store's schema; recount quotas; gc unreferenced bodies")
    d.add_argument("action", choices=["init", "upgrade", "status", "recount", "gc"])
    d.add_argument("--dry-run", action="store_true", help="gc: count what would go, remove nothing")
    d.add_argument("--grace", type=float, metavar="SECONDS",
                   help="gc: objects younger than this are kept (default: [postgres] gc_grace)")
    m = add_parser("migrate", help="copy Maildir accounts into the PostgreSQL store (resumable, verified)")
    m.add_argument("action", choices=["maildir-to-postgres"])
    m.add_argument("users", nargs="*", metavar="USER")
    m.add_argument("--all", action="store_true", help="every account of the Maildir store")
    m.add_argument("--maildir", help="the Maildir store's root (default: [store] mail_dir)")
    return p


def _hoistConfig(argv):
    """
    Move ``--config FILE`` (``-c FILE``, ``--config=FILE``) found after the
    command to the front, where argparse takes it (a subcommand's optional
    positionals would otherwise swallow the words around it).  The last one
    given wins.
    """
    rest, config, i = [], None, 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest += argv[i:]
            break
        if arg in ("--config", "-c") and i + 1 < len(argv):
            config = argv[i + 1]
            i += 2
            continue
        if arg.startswith("--config="):
            config = arg[len("--config="):]
        elif arg.startswith("-c") and len(arg) > 2 and not arg.startswith("--"):
            config = arg[2:]
        else:
            rest.append(arg)
        i += 1
    return rest if config is None else ["--config", config, *rest]


def main(argv=None):
    argv = _hoistConfig(sys.argv[1:] if argv is None else argv)
    p = parser()
    args, rest = p.parse_known_args(argv)
    if rest and args.command != "queue":
        p.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "queue" and ({"-h", "--help"} & set(rest) or not rest):
        from mailnet.queue import cli

        return cli.main(None, rest)  # usage: no data directory needed
    if args.command == "user" and args.action != "list" and not args.name:
        _die(f"user {args.action}: which user?", 2)
    if args.command not in ("config", "run", "db", "migrate"):
        _checkDataDir(args)
    if args.command == "queue":
        return cmdQueue(args, rest)
    handler = {"run": cmdRun, "user": cmdUser, "alias": cmdAlias, "config": cmdConfig, "token": cmdToken, "cert": cmdCert,
               "dkim": cmdDkim, "dns": cmdDns, "status": cmdStatus, "tlsrpt": cmdTlsrpt, "dmarc": cmdDmarc,
               "db": cmdDb,
               "migrate": cmdMigrate}[args.command]
    status = handler(args)
    if args.command in ("dkim", "dns", "status", "db", "migrate", "dmarc") and status:
        raise SystemExit(status)
    return status


if __name__ == "__main__":
    main()
