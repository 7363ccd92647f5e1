"""`python -m xmail.cli`: the same as `xmailctl`."""

import sys

from xmail.cli.main import main

sys.exit(main())
