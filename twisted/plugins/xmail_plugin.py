"""The `twistd xmail` plugin."""

from __future__ import annotations

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from twisted.python import usage
from zope.interface import implementer


class Options(usage.Options):
    optParameters = [
        ["config", "c", None, "TOML config file (default: the embedded default, data in ./xmail-data)"],
    ]


@implementer(IServiceMaker, IPlugin)
class XmailServiceMaker:
    tapname = "xmail"
    description = "xmail: SMTP, POP3 and IMAP4 mail server"
    options = Options

    def makeService(self, options: Options):
        from xmail.config import ConfigError, load
        from xmail.workers.supervisor import twistd_service

        try:
            settings = load(options["config"])
        except ConfigError as e:
            raise SystemExit(f"xmail: {e}") from None
        twistd = getattr(options, "parent", None) or {}
        # A fault an operator can fix (port in use, unreadable certificate,
        # data_dir) ends here with one line and exit status 1.
        return twistd_service(settings, twistd.get("uid"), twistd.get("gid"))


serviceMaker = XmailServiceMaker()
