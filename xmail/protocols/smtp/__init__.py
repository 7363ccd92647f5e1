"""ESMTP: inbound MX and authenticated submission (issue #3).

parser.py (sans-IO framing), grammar.py (paths and parameters),
replies.py (the reply catalog), session.py (the state machine),
spool.py (message content on its way in), delivery.py (store, queue,
portal and send-save), server.py (the Twisted Protocol and SMTPFactory).
"""
