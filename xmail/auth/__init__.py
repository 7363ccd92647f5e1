"""Users and login: the directory (domains, alias domains, users, aliases in
LMDB), password hashing, the shared twisted.cred Portal and the audit log.

Protocols use only xmail.auth.interfaces and the Portal in ServerContext.
"""
