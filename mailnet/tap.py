"""
The twistd service maker: ``twistd -n mailnet [--config FILE]`` finds it
through twisted/plugins/mailnet_plugin.py, and ``mailnet run`` hands it to
twistd's runner directly (no plugin discovery, so it works however mailnet
was installed).
"""

import sys

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from twisted.python import usage
from zope.interface import implementer


class Options(usage.Options):
    optParameters = [
        ["config", "c", None, "TOML config file (default: development defaults under ./var)"],
    ]

    def postOptions(self):
        # `twistd -n mailnet` logging to stdout: our observer writes the same
        # lines (cheaper, and without DNS resolver chatter).  A --logger,
        # --logfile or --syslog given to twistd is left alone.
        parent = self.parent
        if (parent is not None and parent.get("logger") is None and parent.get("nodaemon")
                and parent.get("logfile") in (None, "-") and not parent.get("syslog")):
            parent["logger"] = "mailnet.logs.twistdObserver"


@implementer(IServiceMaker, IPlugin)
class MailnetServiceMaker:
    tapname = "mailnet"
    description = "mailnet mail server: SMTP, submission, relay queue, IMAP, POP3, JMAP"
    options = Options

    def makeService(self, options):
        from mailnet import config, logs, service

        try:
            conf = config.load(options["config"])
            logs.setLevel(conf.log.level)
            logs.setFormat(conf.log.format)
            return service.makeService(conf, exitOnError=True)
        except config.ConfigError as e:
            print(f"mailnet: {e}", file=sys.stderr)
            raise SystemExit(2)


serviceMaker = MailnetServiceMaker()


def runTwistd(argv):
    """
    Run twistd with ``argv`` (its options, then ``mailnet`` and ours) and
    :data:`serviceMaker` as its only plugin.
    """
    from twisted.application import app
    from twisted.scripts import twistd

    class ServerOptions(twistd.ServerOptions):
        _getPlugins = staticmethod(lambda interface: [serviceMaker])

    sys.argv = ["twistd", *argv]
    app.run(twistd.runApp, ServerOptions)
