# -*- test-case-name: tests.protocols.test_smtp_mx -*-
"""What the SMTP session asks of the rest of xmail, through ServerContext.

`MailAgent` is the session's backend: recipient checks through the
directory, login through the portal, durable delivery through the store,
remote recipients into the outbound queue, send-save.  It reads ctx at
call time (the core service fills ctx in after the factories exist).
"""

from __future__ import annotations

import email.utils
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from xmail.auth.login import login
from xmail.auth.sasl import Credentials
from xmail.filter.interfaces import JUNK_FOLDER, Action, Filing, Review, Transaction, Verdict
from xmail.filter.interfaces import Recipient as FilterRecipient
from xmail.message import mailboxes, scan_header_section
from xmail.protocols.smtp import replies
from xmail.protocols.smtp.limits import DailySendCounter
from xmail.protocols.smtp.replies import Reply
from xmail.protocols.smtp.session import (
    MX,
    SUBMISSION,
    Envelope,
    SessionInfo,
    add_missing_headers,
)
from xmail.protocols.smtp.spool import MessageSpool, discard_copy
from xmail.queue.interfaces import QueueRecipient
from xmail.store.interfaces import MessageTooLarge, NoSuchFolder, OverQuota, StoreBusy, StoreError

_AUTHOR_FIELDS = frozenset(("from", "sender"))
_DATE_FIELD = frozenset(("date",))
# The Message-ID field, unfolded (RFC 5322 §3.6.4), for logs and send-save.
_MESSAGE_ID = re.compile(rb"^message-id[ \t]*:((?:[^\r\n]|\r\n[ \t])*)", re.IGNORECASE | re.MULTILINE)


def transaction_id() -> str:
    """A unique, sortable id for Received headers, logs and spool files."""
    return f"{time.time_ns() // 1000:X}{secrets.token_hex(3).upper()}"


def received_field(info: SessionInfo, envelope: Envelope, hostname: str) -> bytes:
    """The trace field of RFC 5321 §4.4 (with-protocol names of RFC 3848 / RFC 6531 §3.7.3)."""
    protocol = ("UTF8SMTP" if envelope.smtputf8 else "ESMTP") if info.esmtp else "SMTP"
    if info.esmtp:
        protocol += ("S" if info.secure else "") + ("A" if info.user else "")
    ip = info.client_ip
    literal = f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]"
    # The EHLO argument is client-controlled: printable ASCII only, no comment syntax.
    helo = "".join(c if "!" <= c <= "~" and c not in "()\\;" else "?" for c in info.helo) or "unknown"
    clause = (f"Received: from {helo} ({literal})\r\n"
              f"\tby {hostname} (xmail) with {protocol} id {info.transaction_id}")
    if len(envelope.recipients) == 1:
        clause += f"\r\n\tfor <{envelope.recipients[0].address}>"
    return f"{clause};\r\n\t{email.utils.formatdate(localtime=True)}\r\n".encode()


def return_path_field(envelope: Envelope) -> bytes:
    return f"Return-Path: <{envelope.mail_from}>\r\n".encode()


def _failure_reply(failure: Any) -> Reply:
    if failure.check(OverQuota):
        return replies.MAILBOX_FULL_PERMANENT if failure.value.permanent else replies.MAILBOX_FULL
    if failure.check(MessageTooLarge):
        return replies.MESSAGE_TOO_BIG
    if failure.check(StoreBusy) or type(failure.value).__name__ == "IndexBusy":
        return replies.STORAGE_BUSY
    return replies.TEMPORARY_FAILURE


class MailAgent:
    """The backend of SMTP sessions of one listener kind (mx or submission)."""

    _log = Logger()

    def __init__(self, ctx: Any, mode: str, send_saver: Callable[..., Any] | None = None):
        self.ctx = ctx
        self.mode = mode
        # send_saver(store, directory, tmp_dir) -> an object whose save(...)
        # puts a submitted message into the sender's Sent folder
        # (xmail.sendsave.SendSaver, passed in by xmail.service: a protocol
        # imports no feature package, issue 14).  None: no Sent copies.
        self.send_saver = send_saver
        settings = ctx.settings
        self.hostname = settings.server.hostname
        self.max_message_size = settings.limits.max_message_size
        self.max_recipients = settings.limits.max_recipients
        self.tmp_dir = settings.path("tmp")
        # Tests replace this with a slow (Deferred-returning) resolver to
        # check pipelining against asynchronous recipient checks.
        self.recipient_resolver: Any = None
        # One counter per server (XmailService builds it, or the workers'
        # shared table), shared by the 587 and 465 listeners; a context
        # built without one (unit tests) gets this agent's own.
        counter = ctx.send_counter
        if counter is None:
            counter = DailySendCounter(settings.limits.daily_send_limit)
        self.send_counter: DailySendCounter = counter

    @property
    def postmaster(self) -> str:
        return f"postmaster@{self.hostname}"

    def _local_postmaster(self) -> str:
        """RFC 5321 §4.5.1: <postmaster> without a domain reaches the
        postmaster of the host name's domain, or of its parent domain
        (mail.example.com -> example.com)."""
        labels = self.hostname.split(".")
        for i in range(len(labels) - 1):
            domain = ".".join(labels[i:])
            if self.ctx.directory.is_local_domain(domain):
                return f"postmaster@{domain}"
        return self.postmaster

    def is_loopback(self, host: str) -> bool:
        return self.ctx.is_loopback(host)

    # -- login ----------------------------------------------------------------------
    def authenticate(self, credentials: Credentials, client_ip: str, method: str) -> Any:
        """-> Deferred[Lease] through the one login path (xmail.auth.login);
        fails with UnauthorizedLogin or LoginUnavailable."""
        return login(self.ctx, credentials, protocol="submission", client_ip=client_ip, method=method)

    def may_send_as(self, user: str, address: str) -> bool:
        return bool(self.ctx.directory.may_send_as(user, address))

    def send_limit_reached(self, user: str) -> int | None:
        return self.send_counter.limit if self.send_counter.reached(user) else None

    # -- recipients -------------------------------------------------------------------
    def _postmaster_account(self, address: str) -> str | None:
        """RFC 5321 §4.5.1: postmaster@ every hosted domain must be accepted.
        A user or alias postmaster@DOMAIN wins; then [server] postmaster;
        then postmaster@ of the host name's domain (README "Postmaster")."""
        directory = self.ctx.directory
        user = directory.resolve(address)
        if user is None and self.ctx.settings.server.postmaster:
            user = directory.resolve(self.ctx.settings.server.postmaster.strip().lower())
        if user is None:
            user = directory.resolve(self._local_postmaster())
        return user

    def check_recipient(self, address: str, info: SessionInfo, envelope: Envelope) -> Any:
        """-> (reply, canonical user or None), maybe as a Deferred."""
        if address == self.postmaster:
            # RFC 5321 §4.1.1.3: <postmaster> without a domain.
            address = self._local_postmaster()
        local, _, domain = address.rpartition("@")
        if local.lower() == "postmaster" and self.ctx.directory.is_local_domain(domain.lower()):
            # RFC 5321 §4.5.1: "postmaster" is case-insensitive.
            return self._local_recipient(self._postmaster_account(address.lower()), envelope)
        if domain.startswith("[") or not self.ctx.directory.is_local_domain(domain):
            # Never an open relay: foreign domains only for authenticated submission.
            if self.mode != SUBMISSION or info.user is None:
                return replies.RELAY_DENIED, None
            if self.ctx.queue is None:
                return replies.QUEUE_UNAVAILABLE, None
            return replies.RECIPIENT_OK, None
        pipeline = self.ctx.pipeline
        if (self.mode == MX and not envelope.mail_from and pipeline is not None
                and self.ctx.queue is not None and pipeline.bounce_target(address) is not None):
            # A bounce to a redirect's SRS sender: sent on to the original
            # sender (the address is rewritten when queued, see _deliver).
            return replies.RECIPIENT_OK, None
        resolver = self.recipient_resolver or self.ctx.directory.resolve
        user = resolver(address)
        if isinstance(user, defer.Deferred):
            return user.addCallback(self._local_recipient, envelope)
        return self._local_recipient(user, envelope)

    def _local_recipient(self, user: str | None, envelope: Envelope) -> tuple[Reply, str | None]:
        if user is None:
            return replies.UNKNOWN_USER, None
        pipeline = self.ctx.pipeline
        if pipeline is not None and self.mode == MX:
            # A sender on this recipient's block list is refused here, per
            # recipient, before any content is sent.
            verdict = pipeline.check_sender(envelope.mail_from, user)
            if verdict is not None:
                reply = verdict_reply(verdict)
                if reply is not None:
                    return reply, None
        if self._over_quota(user, envelope.size or 0):
            return replies.MAILBOX_FULL, None
        return replies.RECIPIENT_OK, user

    def _over_quota(self, user: str, size: int) -> bool:
        """Refuse at RCPT rather than after DATA when the mailbox is full."""
        try:
            usage = self.ctx.store.mailbox(user).quota()
        except Exception:
            return False  # not provisioned yet: delivery provisions it
        if usage.bytes_limit and usage.bytes_used + size > usage.bytes_limit:
            return True
        return bool(usage.messages_limit) and usage.messages_used >= usage.messages_limit

    # -- content ------------------------------------------------------------------------
    def new_spool(self, info: SessionInfo, envelope: Envelope, on_headers: Any) -> MessageSpool:
        info.transaction_id = transaction_id()
        # Return-Path is added at final delivery, above what the pipeline adds
        # (RFC 5321 §4.4: "at the beginning of the mail data").
        prefix = received_field(info, envelope, self.hostname)
        return MessageSpool(self.tmp_dir, info.transaction_id, max_size=self.max_message_size,
                            prefix=prefix, on_headers=on_headers)

    def check_headers(self, info: SessionInfo, envelope: Envelope,
                      section: bytes) -> tuple[bytes, str | None, Reply | None]:
        """(header section, Message-ID, refusal or None)."""
        match = _MESSAGE_ID.search(section)
        message_id = None
        if match:
            message_id = " ".join(match.group(1).decode("utf-8", "replace").split()) or None
        if self.mode != SUBMISSION:
            pipeline = self.ctx.pipeline
            if pipeline is None:
                return section, message_id, None
            section, verdict = pipeline.check_header_section(self.mode, section)
            return section, message_id, verdict_reply(verdict) if verdict is not None else None
        assert info.user is not None
        refusal = self.check_author_fields(info.user, section)
        if refusal is not None:
            return section, message_id, refusal
        # RFC 6409 §8.2 / §8.3: a submission server may add Date and Message-ID.
        new_id = None
        if message_id is None:
            message_id = new_id = email.utils.make_msgid(domain=self.hostname)
        has_date = scan_header_section(section, _DATE_FIELD).fields != []
        section = add_missing_headers(section, self.hostname, date=not has_date, message_id=new_id)
        return section, message_id, None

    def check_author_fields(self, user: str, section: bytes) -> Reply | None:
        """Submission's From/Sender check (RFC 6409 §8 lets the MSA refuse
        what it will not vouch for).  It reads the header with the store's
        own reader and address grammar (xmail.message), so the From that
        ENVELOPE, SEARCH and HEADER.FIELDS show later is the From checked
        here (issue 16 #8).  Refused: a header section broken by a line that
        is not a field (readers disagree on where it ends), "From :" or
        "Sender :" (some readers skip such a field, others read it), more
        than one From or Sender (RFC 5322 §3.6: at most one each), and any
        From/Sender address the user may not send as."""
        header = scan_header_section(section, _AUTHOR_FIELDS)
        if header.broken:
            return replies.HEADER_BROKEN
        for name in ("from", "sender"):
            if name in header.spaced:
                return replies.HEADER_SPACED.format(name.capitalize())
        authors = header.all("from")
        if len(authors) > 1:
            return replies.HEADER_REPEATED.format("From")
        if len(header.all("sender")) > 1:
            return replies.HEADER_REPEATED.format("Sender")
        senders = mailboxes(authors[0]) if authors else []
        if not senders:
            return replies.FROM_MISSING
        sender_field = header.first("sender")
        for address in senders + (mailboxes(sender_field) if sender_field is not None else []):
            if not self.may_send_as(user, address):
                return replies.FROM_NOT_OWNED.format(address, user)
        return None

    def transaction(self, info: SessionInfo, envelope: Envelope, spool: MessageSpool) -> Transaction:
        """What the delivery pipeline reviews (xmail.filter.interfaces)."""
        # Once: a small message's source() joins its chunks at every call.
        source = spool.source()
        return Transaction(
            mode=self.mode, id=info.transaction_id, client_ip=info.client_ip, helo=info.helo,
            mail_from=envelope.mail_from,
            recipients=tuple(FilterRecipient(r.address, r.user) for r in envelope.recipients),
            user=info.user, header_section=envelope.headers or b"", size=spool.size,
            hostname=self.hostname, source=lambda: source)

    @defer.inlineCallbacks
    def accept_message(self, info: SessionInfo, envelope: Envelope, spool: MessageSpool) -> Any:
        """-> Deferred[Reply]: review, deliver, queue, send-save; 250 only once durable."""
        if info.user is not None and self.send_counter.reached(info.user):
            return replies.SEND_LIMIT_REACHED.format(self.send_counter.limit)
        review: Review | None = None
        pipeline = self.ctx.pipeline
        if pipeline is not None:
            review = yield pipeline.review(self.transaction(info, envelope, spool))
            refusal = verdict_reply(review.verdict)
            if refusal is not None:
                self._audit_refused(info, envelope, spool, review)
                return refusal
        # What the pipeline adds (Authentication-Results, X-Spam-*, DKIM-Signature)
        # goes in front of the spooled message, for the queue and the store alike.
        added = review.prefix() if review is not None else b""
        discarded = review.discarded if review is not None else {}
        copies: list[bytes | str] = []
        try:
            return (yield self._deliver(info, envelope, spool, review, added, discarded, copies))
        finally:
            for copy in copies:
                discard_copy(copy)

    @defer.inlineCallbacks
    def _deliver(self, info: SessionInfo, envelope: Envelope, spool: MessageSpool, review: Review | None,
                 added: bytes, discarded: dict[str, str], copies: list[bytes | str]) -> Any:
        local_users: list[str] = []
        for recipient in envelope.recipients:
            user = recipient.user
            if user is not None and user not in local_users and user not in discarded:
                local_users.append(user)
        remote = [r for r in envelope.recipients if r.user is None]
        failures: list[tuple[str, Any]] = []
        delivered: list[str] = [u for u in discarded]  # accepted, then dropped by a rule (logged)
        if review is not None:
            # Hosted users a filter rule redirected the message to: stored
            # here like the envelope's own (their own rules already ran).
            local_users += [u for u in review.filings if u not in local_users and u not in discarded]
        if review is not None and review.dropped:
            # A domain rule discarded the message as a whole: accepted (250),
            # nothing delivered or sent, logged with the rule's reason.
            delivered += local_users + [r.address for r in remote]
            local_users, remote = [], []

        queued: list[bytes | str] = []

        @defer.inlineCallbacks
        def queue_source() -> Any:
            """What the queue gets (bytes or a path, IOutboundQueue.enqueue):
            made when first needed -- for an MX message only if a local
            delivery fails, so a big one is not copied for nothing."""
            if not queued:
                source = spool.source()
                if added:
                    source = yield spool.with_prefix(added, "filtered")
                    copies.append(source)
                queued.append(source)
            return queued[0]

        if remote:
            pipeline = self.ctx.pipeline
            if self.mode == MX and pipeline is not None:
                # MX accepts a remote recipient only as an SRS bounce address.
                remote = [replace(r, address=pipeline.bounce_target(r.address) or r.address) for r in remote]
            try:
                yield self.ctx.queue.enqueue(
                    envelope.mail_from,
                    [QueueRecipient(r.address, r.notify, r.orcpt) for r in remote],
                    (yield queue_source()), envid=envelope.envid, ret=envelope.ret)
                delivered += [r.address for r in remote]
            except Exception:
                failures += [(r.address, _failure_of_current()) for r in remote]

        if local_users:
            # Final delivery here: Return-Path goes in now, first (RFC 5321 §4.4);
            # the queue adds its own to what it delivers.
            source: bytes | str = yield spool.with_prefix(return_path_field(envelope) + added, "local")
            copies.append(source)
            # Each user's copies: one in INBOX or Junk, or what filter rules chose.
            plan = [(user, filing) for user in local_users
                    for filing in (review.copies(user) if review is not None else [Filing()])]
            results = yield defer.DeferredList(
                [self._store_copy(user, source, filing) for user, filing in plan], consumeErrors=True)
            failed_users: dict[str, Any] = {}
            for (user, _filing), (ok, value) in zip(plan, results, strict=True):
                if not ok:
                    failed_users.setdefault(user, value)
            for user in local_users:
                # A user with one copy stored has the message: the other
                # copies' faults are logged, not retried (a retry would
                # duplicate the stored ones).
                stored = any(ok for (u, _f), (ok, _v) in zip(plan, results, strict=True) if u == user)
                if stored:
                    delivered.append(user)
                    if user in failed_users:
                        self._log.failure("{id}: a filed copy for {user} failed", failed_users[user],
                                          id=info.transaction_id, user=user)
                else:
                    failures.append((user, failed_users[user]))

        if review is not None and review.outgoing and (delivered or not failures):
            # Redirects and replies the filter rules asked for, queued before the
            # 250: a redirect that replaced delivery is part of accepting it.
            sent = yield self._send_on(info, review, spool, added, copies)
            if not sent:
                return replies.TEMPORARY_FAILURE

        handed_over = False
        if delivered and failures and self.ctx.queue is not None:
            # Accepted for the others, so the 250 covers these too: the queue
            # retries them (over quota may clear) and bounces to the sender
            # if they never succeed.  Nothing accepted is dropped.
            failed = {address for address, _f in failures}
            retry: list[QueueRecipient] = []
            for r in envelope.recipients:
                key = r.user or r.address
                if key in failed:
                    failed.discard(key)  # one copy per user, as in the first attempt
                    retry.append(QueueRecipient(r.address, r.notify, r.orcpt))
            # Users a redirect added (not in the envelope) are retried too.
            retry += [QueueRecipient(user) for user in sorted(failed)]
            try:
                yield self.ctx.queue.enqueue(
                    envelope.mail_from, retry,
                    (yield queue_source()), envid=envelope.envid, ret=envelope.ret)
                delivered += [address for address, _f in failures]
                handed_over = True
                self._log.info("{id}: {count} recipient(s) handed to the queue after a failed delivery",
                               id=info.transaction_id, count=len(retry))
            except Exception:
                self._log.failure("{id}: cannot queue the failed recipients", id=info.transaction_id)
        for address, failure in failures:
            if failure.check(StoreError):
                self._log.warn("delivery of {id} to {rcpt} refused: {why}", id=info.transaction_id,
                               rcpt=address, why=failure.getErrorMessage())
            else:
                self._log.failure("delivery of {id} to {rcpt} failed", failure, id=info.transaction_id,
                                  rcpt=address)
        if not delivered:
            return _failure_reply(failures[0][1])
        if failures and not handed_over:
            # RFC 5321 §6.1: after a 250 the message must not be lost.  Some
            # copies could be neither stored nor queued: the client sends the
            # whole message again (the delivered ones get a duplicate, which
            # §6.1 prefers to a loss).
            return replies.TEMPORARY_FAILURE
        self._audit_received(info, envelope, spool, delivered, review)

        if self.mode == SUBMISSION and info.user is not None:
            self.send_counter.record(info.user)
            yield self._send_save(info, envelope, spool)
        return replies.MESSAGE_ACCEPTED.format(info.transaction_id)

    def _store_copy(self, user: str, source: bytes | str, filing: Filing) -> Any:
        store = self.ctx.store
        d = defer.maybeDeferred(store.deliver, user, source, filing.folder, filing.flags)
        if filing.folder != "INBOX":
            @defer.inlineCallbacks
            def fall_back(failure: Any) -> Any:
                failure.trap(NoSuchFolder)
                if filing.create:
                    # Sieve fileinto :create (RFC 5490 §3.2).
                    try:
                        mailbox = yield store.provision(user)
                        yield mailbox.create_folder(filing.folder)
                        return (yield store.deliver(user, source, filing.folder, filing.flags))
                    except Exception:
                        self._log.failure("{user}: cannot create {folder}; delivered to INBOX",
                                          user=user, folder=filing.folder)
                # A user who deleted their Junk folder, or a rule naming a
                # missing folder, still gets the mail.
                return (yield store.deliver(user, source, "INBOX", filing.flags))
            d.addErrback(fall_back)
        return d

    @defer.inlineCallbacks
    def _send_on(self, info: SessionInfo, review: Review, spool: MessageSpool, added: bytes,
                 copies: list[bytes | str]) -> Any:
        """Queue what the filter rules send on; False when a required one
        (a redirect) could not be queued."""
        ok = True
        for out in review.outgoing:
            try:
                if out.data is not None:
                    source: bytes | str = out.data
                else:
                    source = yield spool.with_prefix(out.prefix + added, "redirect")
                    copies.append(source)
                yield self.ctx.queue.enqueue(out.mail_from, [QueueRecipient(r) for r in out.recipients],
                                             source)
                self._log.info("{id}: {kind} to {rcpt} queued", id=info.transaction_id, kind=out.kind,
                               rcpt=",".join(out.recipients))
            except Exception:
                self._log.failure("{id}: cannot queue the {kind} to {rcpt}", id=info.transaction_id,
                                  kind=out.kind, rcpt=",".join(out.recipients))
                ok = ok and not out.required
        return ok

    def _audit_refused(self, info: SessionInfo, envelope: Envelope, spool: MessageSpool,
                       review: Review) -> None:
        verdict = review.verdict
        self._log.info("{id}: {action} by {stage}: {code} {text}", id=info.transaction_id,
                       action=verdict.action.value, stage=verdict.stage or "filter", code=verdict.code,
                       text=verdict.text)
        if self.ctx.audit is None:
            return
        self.ctx.audit.mail("refused", id=info.transaction_id, protocol=info.mode,
                            client_ip=info.client_ip, user=info.user or "", sender=envelope.mail_from,
                            recipients=",".join(r.address for r in envelope.recipients), size=spool.size,
                            message_id=envelope.message_id or "", result=verdict.action.value,
                            stage=verdict.stage, reply=f"{verdict.code} {verdict.status} {verdict.text}",
                            notes="; ".join(review.notes))

    def _audit_received(self, info: SessionInfo, envelope: Envelope, spool: MessageSpool,
                        delivered: list[str], review: Review | None) -> None:
        if self.ctx.audit is None:
            return
        extra: dict[str, str] = {}
        if review is not None:
            # The pipeline's findings go to the mail log with the delivery.
            junk = sorted(user for user, folder in review.folders.items() if folder == JUNK_FOLDER)
            if junk:
                extra["junk"] = ",".join(junk)
            if review.discarded:
                extra["discarded"] = ",".join(f"{u} ({why})" for u, why in sorted(review.discarded.items()))
            if review.dropped:
                extra["discarded"] = f"all ({review.dropped})"
            if review.notes:
                extra["notes"] = "; ".join(review.notes)
        self.ctx.audit.mail("received", id=info.transaction_id, protocol=info.mode,
                            client_ip=info.client_ip, user=info.user or "", sender=envelope.mail_from,
                            recipients=",".join(delivered), size=spool.size,
                            message_id=envelope.message_id or "", **extra)

    @defer.inlineCallbacks
    def _send_save(self, info: SessionInfo, envelope: Envelope, spool: MessageSpool) -> Any:
        if self.send_saver is None:
            return
        saver = self.send_saver(self.ctx.store, self.ctx.directory, self.tmp_dir)
        try:
            yield saver.save(info.user, spool.source(), envelope.headers or b"",
                             [r.address for r in envelope.recipients], envelope.message_id)
        except Exception:
            # The mail is on its way; a missing Sent copy must not fail it.
            self._log.failure("send-save for {user} failed", user=info.user)


def verdict_reply(verdict: Verdict) -> Reply | None:
    """The SMTP reply for a pipeline verdict that refuses the message."""
    if verdict.action is Action.REJECT:
        return Reply(verdict.code if 500 <= verdict.code <= 599 else 550, verdict.status or "5.7.1",
                     verdict.text or "Message refused")
    if verdict.action is Action.TEMPFAIL:
        return Reply(verdict.code if 400 <= verdict.code <= 499 else 451, verdict.status or "4.7.1",
                     verdict.text or "Try again later")
    if verdict.action is Action.HOLD:
        # Holding in the queue arrives with issue 22; until then nothing
        # accepted may be held, so a stage asking for it gets a retry.
        return Reply(451, "4.7.1", "Message cannot be held now, try again later")
    return None


def _failure_of_current() -> Any:
    from twisted.python.failure import Failure

    return Failure()

