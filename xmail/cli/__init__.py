# -*- test-case-name: tests.test_cli -*-
"""`xmailctl`, the admin command line: one package, one module per command
group (domain, user, alias, recycle, queue, logs, dns), plain imports.

`xmailctl = xmail.cli:main` (setup.cfg) and `python -m xmail.cli` run
xmail.cli.main.main; xmail.cli.context holds what handlers share.
"""

from xmail.cli.context import CliContext, CliError
from xmail.cli.main import main

__all__ = ["CliContext", "CliError", "main"]
