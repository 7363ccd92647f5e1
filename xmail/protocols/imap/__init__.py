# -*- test-case-name: tests.protocols.test_imap_commands -*-
"""xmail's IMAP4rev1 server.

    tokenizer.py   sans-IO framing: lines, {n} / {n+} literals, raw lines
    grammar.py     tokens -> typed requests (model.py types)
    response.py    atoms, strings, literals, lists; modified UTF-7 names
    session.py     states, the one command registry, errors -> replies
    sync.py        the selected folder's view; store changes -> untagged data
    commands/      handlers: any_state, auth, mailbox, append, selected, message,
                   multisearch, quota
    binary.py / imapurl.py / results.py / searchres.py   BINARY decoding, IMAP
                   URLs (CATENATE), ESEARCH items (PARTIAL), SEARCHRES "$"
    fetch.py / search.py / sort.py / thread.py   pure data functions (mime)
    server.py      Twisted Protocol + IMAPFactory, back-pressure, timeouts

RFCs implemented (status, where):

| RFC  | title                               | status    | where |
|------|-------------------------------------|-----------|-------|
| 3501 | IMAP4rev1                           | full      | everywhere |
| 2177 | IDLE                                | full      | commands/selected.py, sync.py |
| 2342 | NAMESPACE                           | full      | commands/any_state.py |
| 2971 | ID                                  | full      | commands/any_state.py |
| 3348 | CHILDREN                            | full      | commands/mailbox.py |
| 3691 | UNSELECT                            | full      | commands/selected.py |
| 4315 | UIDPLUS                             | full      | commands/mailbox.py, message.py, selected.py |
| 4731 | ESEARCH                             | full      | commands/message.py |
| 4959 | SASL-IR                             | full      | commands/auth.py |
| 5161 | ENABLE                              | full (CONDSTORE, QRESYNC) | commands/any_state.py |
| 5256 | SORT, THREAD                        | full      | commands/message.py, sort.py, thread.py |
| 5258 | LIST-EXTENDED                       | full      | grammar.py, commands/mailbox.py |
| 5267 | ESORT                               | full      | commands/message.py, sort.py |
| 5530 | response codes                      | used      | session.py |
| 5819 | LIST-STATUS                         | full      | commands/mailbox.py |
| 5957 | SORT=DISPLAY                        | full      | sort.py |
| 6154 | SPECIAL-USE, CREATE-SPECIAL-USE     | full      | commands/mailbox.py |
| 6851 | MOVE                                | full      | commands/message.py |
| 7888 | LITERAL+                            | full      | tokenizer.py |
| 7889 | APPENDLIMIT                         | capability only (one global limit) | commands/any_state.py |
| 2595 / 8314 | STARTTLS, implicit TLS       | full      | commands/auth.py, server.py |
| 4616 | SASL PLAIN (and LOGIN)              | full      | commands/auth.py |
| 7162 | CONDSTORE / QRESYNC                 | full (never NOMODSEQ) | commands/, sync.py |
| 9208 | QUOTA (RES-STORAGE, RES-MESSAGE)    | full (SETQUOTA refused) | commands/quota.py |
| 4978 | COMPRESS=DEFLATE                    | full      | server.py |
| 5182 | SEARCHRES ($)                       | full      | searchres.py |
| 3516 | BINARY                              | full      | binary.py, commands/message.py |
| 3502 | MULTIAPPEND                         | full      | commands/append.py |
| 4469 | CATENATE                            | full (no URLAUTH) | commands/append.py, imapurl.py |
| 7377 | MULTISEARCH                         | full (no scope options) | commands/multisearch.py |
| 9394 | PARTIAL                             | full      | results.py |
| 5267 | CONTEXT=SEARCH                      | full (CONTEXT=SORT: no) | searchctx.py |
"""
