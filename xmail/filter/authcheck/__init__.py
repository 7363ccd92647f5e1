# -*- test-case-name: tests.filter.authcheck.test_stage -*-
"""Inbound authentication of MX mail (issue 17): SPF (RFC 7208), DKIM
(RFC 6376), DMARC (RFC 7489), ARC (RFC 8617), reported in one
Authentication-Results field (RFC 8601).

- dnsbridge: every DNS question, from pyspf/dkimpy in worker threads or
  from the reactor, answered by twisted.names under a deadline;
- spf, dkim (with ARC), dmarc: the checks, each turning faults into results;
- body: DKIM body hashes streamed from the spool file (dkimpy sees headers only);
- results: the field, with client data escaped;
- stage: AuthenticationStage, the pipeline stage that ties them together.
"""

from xmail.filter.authcheck.stage import AuthenticationStage

__all__ = ["AuthenticationStage"]
