# -*- test-case-name: tests.protocols.test_pop3_session -*-
"""POP3 (RFC 1939) with CAPA (RFC 2449), STLS (RFC 2595), SASL AUTH (RFC 5034)
and response codes (RFC 2449 §8, RFC 3206).

parser.py   sans-IO command lines in, events out (bounded lines)
(dot-stuffing of responses: xmail.message.dotstuff)
session.py  the state machine and the one command table
maildrop.py the RFC 1939 §8 exclusive-access lock
server.py   the Twisted Protocol (thin glue), streaming, POP3Factory
"""
