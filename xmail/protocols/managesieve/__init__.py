# -*- test-case-name: tests.protocols.managesieve.test_session -*-
"""ManageSieve (RFC 5804): users edit their Sieve filter rules remotely.

parser.py    sans-IO command framing in, events out (bounded lines, literals)
response.py  strings, literals and OK/NO/BYE lines the server writes
session.py   the state machine and the one command table
server.py    the Twisted Protocol (thin glue), the check thread pool, the factory
"""
