"""twistd plugin: ``twistd -n mailnet [--config FILE]``."""

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from twisted.python import usage
from zope.interface import implementer


class Options(usage.Options):
    optParameters = [
        ["config", "c", None, "TOML config file (default: development defaults under ./var)"],
    ]


@implementer(IServiceMaker, IPlugin)
class MailnetServiceMaker:
    tapname = "mailnet"
    description = "mailnet mail server: SMTP, submission, relay queue, IMAP, POP3, JMAP"
    options = Options

    def makeService(self, options):
        import sys

        from mailnet import config, logs, service

        try:
            conf = config.load(options["config"])
            logs.setLevel(conf.log.level)
            return service.makeService(conf, exitOnError=True)
        except config.ConfigError as e:
            print(f"mailnet: {e}", file=sys.stderr)
            raise SystemExit(2)


serviceMaker = MailnetServiceMaker()
