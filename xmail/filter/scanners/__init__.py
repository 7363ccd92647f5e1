# -*- test-case-name: tests.filter.scanners -*-
"""Clients for the content scanners of the delivery pipeline (issue 17).

- `clamd`: ClamAV's clamd over zINSTREAM, unix or TCP socket;
- `rspamd`: rspamd's HTTP protocol (`/checkv2`, envelope in headers);
- `learn`: rspamd's controller (`/learnspam`, `/learnham`), rate-limited;
- `stages`: the pipeline stages built on them ("antivirus", "antispam").

Every client streams the message from the spool in small chunks read on
the pipeline's thread pool (`FilterWork`), so a 40 MB message never sits
in memory, and every reply is parsed with a bound on its size.  A fault
(daemon down, garbage, cut-off reply, timeout, message over the
scanner's limit) is a `ScannerError`: the stage's failure policy
(`[filter] on_scanner_failure`) decides what happens to the message.
"""

from __future__ import annotations


class ScannerError(Exception):
    """The scanner could not give an answer (down, garbage, cut off)."""


class ScannerLimitError(ScannerError):
    """The message is over the scanner's own size limit (clamd's
    StreamMaxLength): handled like a scanner fault, never as clean."""
