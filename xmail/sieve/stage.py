# -*- test-case-name: tests.sieve.test_delivery_daemon -*-
"""Filter rules as a stage of the delivery pipeline (issue 18).

On MX the stage runs once per local recipient: the domain's "before"
scripts, the user's active script, the user's managed scripts (vacation,
forward), the domain's "after" scripts (xmail.sieve.storage.chain), and
turns the outcome into what delivery does:

- keep / fileinto: the copies to store (`Review.filings`: folder, IMAP
  flags, :create); a missing folder without :create falls back to INBOX;
  the default folder is the one protection chose (INBOX or Junk);
- discard: that recipient's copy is dropped (logged);
- redirect: the message goes out again through the queue with a field
  marking our hop (`X-Sieve-Redirected-From`, as Pigeonhole writes it) and
  the envelope sender rewritten with SRS (xmail.sieve.srs), header and body
  untouched so DKIM and ARC stay valid.  A user whose address is already
  in such a field, or a message that was redirected MAX_HOPS times, is not
  redirected again: kept instead (two users forwarding to each other stop
  within two hops);
- reject / ereject: refused in SMTP (550) when every recipient rejects,
  else that copy is dropped and the sender gets a rejection notice;
- vacation: a reply unless RFC 5230 §4.5 / RFC 3834 say no or the sender
  had one within the period (xmail.sieve.vacation).

On submission the sender's domain scripts run first, once for the message
(environment "location" is "MS"): a discard drops the message, a reject
refuses it, a redirect sends a copy (to a tracking mailbox, say); fileinto
and vacation have nothing to act on there and are logged as ignored.  Then
each hosted recipient's chain runs as on MX (location "MDA"): a colleague's
rules apply to internal mail too.  Domain scripts that must act once per
message test `environment :is "location" "MS"`.

A redirect to a hosted address is not sent through the queue: that user
becomes one more local recipient, their own rules run, and a redirect back
to anyone the message came through is a loop (kept where it is).

A runtime error keeps the message (RFC 5228 §2.10.6); a fault of the stage
itself does too (on_failure IGNORE): a filter rule never loses mail.
Every recipient's actions are written to the mail log (Review.notes).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from xmail.filter.interfaces import MX, SUBMISSION, Filing, Outgoing, Review, Transaction, Verdict
from xmail.filter.pipeline import IGNORE, INLINE_HEADER, Stage
from xmail.message import mailboxes, scan_header_section
from xmail.sieve.actions import Discard, FileInto, Keep, Outcome, Redirect, Reject, Vacation, describe
from xmail.sieve.compiler import compile_script
from xmail.sieve.interfaces import AFTER, BEFORE, SieveScriptError, domain_owner
from xmail.sieve.interpreter import evaluate
from xmail.sieve.message import SieveMessage
from xmail.sieve.srs import SRS
from xmail.sieve.storage import SieveScripts
from xmail.sieve.vacation import VacationMemory, compose_reply, refusal

REDIRECT_MARK = "X-Sieve-Redirected-From"
MAX_HOPS = 3          # redirect marks a message may carry before we stop redirecting it
BODY_LIMIT = 2 * 1024 * 1024  # octets of the message a body test may read
CACHE_SIZE = 512      # compiled scripts kept (by text digest)
VERSION = "1"


class CompiledScripts:
    """Compiled scripts by the digest of their text: a delivery compiles a
    script once, and a change (a new text) is a new entry.  Thread-safe:
    includes are resolved in the pool's threads."""

    def __init__(self, size: int = CACHE_SIZE):
        self.size = size
        self._lock = threading.Lock()
        self._cache: OrderedDict[bytes, Any] = OrderedDict()

    def get(self, text: str) -> Any:
        key = hashlib.sha256(text.encode()).digest()
        with self._lock:
            script = self._cache.get(key)
            if script is not None:
                self._cache.move_to_end(key)
                return script
        script = compile_script(text)
        with self._lock:
            self._cache[key] = script
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return script


def spamtest_value(score: float | None, spam: float, reject: float) -> int:
    """RFC 5235 §3.2: 0 not tested, 1 surely not spam ... 10 surely spam.
    rspamd's score is placed between 0 and the domain's reject score; the
    spam threshold maps to at least 6 so `spamtest :value "ge" "6"` follows
    the Junk decision."""
    if score is None:
        return 0
    if score <= 0:
        return 1
    if score >= reject:
        return 10
    value = 1 + int(9 * score / reject)
    if score >= spam:
        value = max(value, 6)
    return min(max(value, 2), 9)


class SieveStage(Stage):
    name = "sieve"
    timeout = 30.0
    on_failure = IGNORE  # RFC 5228 §2.10.6: an error keeps the message

    _log = Logger()

    def __init__(self, scripts: SieveScripts, store: Any, directory: Any, work: Any,
                 memory: VacationMemory, srs: SRS, hostname: str, *,
                 thresholds: Callable[[str], tuple[float, float]] | None = None,
                 virus_scanning: bool = False, clock: Callable[[], float] = time.time):
        self.scripts = scripts
        self.store = store
        self.directory = directory
        self.work = work
        self.memory = memory
        self.srs = srs
        self.hostname = hostname
        self.thresholds = thresholds
        self.virus_scanning = virus_scanning
        self.clock = clock
        self.compiled = CompiledScripts()

    def applies(self, transaction: Transaction) -> bool:
        return transaction.mode in (MX, SUBMISSION)

    # -- the review --------------------------------------------------------------------------
    @defer.inlineCallbacks
    def review(self, review: Review) -> Any:
        tx = review.transaction
        if tx.mode == SUBMISSION and tx.user is not None:
            yield self._submission(review)
            if review.final or review.dropped:
                return
        rejected: list[tuple[str, str]] = []
        # (user, the address the message came to, the users it was
        # redirected through): envelope recipients first, then hosted users
        # a rule redirected to, whose own rules run too.
        work = [(user, next(r.address for r in tx.recipients if r.user == user), (user,))
                for user in tx.local_users if user not in review.discarded]
        receiving = {user for user, _rcpt, _path in work}
        while work:
            user, rcpt, path = work.pop(0)
            chain = self.scripts.chain(user)
            if not chain:
                if len(path) > 1:
                    review.filings[user] = [Filing()]
                continue
            outcome = yield self._evaluate(review, user, rcpt, chain)
            targets = yield self._apply(review, user, outcome, rejected, path, receiving)
            work += targets
        if rejected:
            self._rejections(review, rejected)

    @defer.inlineCallbacks
    def _evaluate(self, review: Review, user: str, rcpt: str, chain: list[tuple[str, str, str]],
                  location: str = "MDA") -> Any:
        folders: set[str] = set()
        if location == "MDA":
            mailbox = yield self.store.provision(user)
            folders = {info.name for info in mailbox.list_folders()}
        message = self._message(review, rcpt, folders, location)
        return (yield self.work.run(self._run, chain, message, user))

    def _run(self, chain: list[tuple[str, str, str]], message: Any, user: str) -> Outcome:
        """In the pool: compile what is not cached, then evaluate."""
        scripts = []
        errors: list[str] = []
        for owner, name, text in chain:
            try:
                scripts.append(self.compiled.get(text))
            except SieveScriptError as e:
                # Stored before a change of the engine's rules: skipped, logged.
                errors.append(f"{owner} script {name!r} does not compile: {e}")
        outcome = evaluate(scripts, message, include=self._includer(user))
        outcome.errors[:0] = errors
        return outcome

    def _includer(self, user: str) -> Callable[[str, bool], Any]:
        """RFC 6609: `:personal` names the user's own scripts, `:global`
        the domain's (its before scripts, then its after scripts)."""
        domain = user.rpartition("@")[2]

        def include(name: str, global_: bool) -> Any:
            owners = [domain_owner(domain, BEFORE), domain_owner(domain, AFTER)] if global_ else [user]
            for owner in owners:
                text = self.scripts.get(owner, name)
                if text is not None:
                    return self.compiled.get(text)
            return None

        return include

    def _message(self, review: Review, rcpt: str, folders: set[str], location: str) -> Any:
        tx = review.transaction
        spam = virus = 0
        score = review.facts.get("spam_score")
        if score is not None and self.thresholds is not None:
            spam_at, reject_at = self.thresholds(rcpt if location == "MDA" else (tx.user or rcpt))
            spam = spamtest_value(float(score), spam_at, reject_at)
        if review.facts.get("virus"):
            virus = 5  # RFC 5235 §3.3: definitely infected
        elif self.virus_scanning and not review.facts.get("unscanned"):
            virus = 1  # scanned, nothing found
        lowered = {name.lower() for name in folders}

        def mailbox_exists(name: str) -> bool:
            return name in folders or (name.lower() == "inbox" and "inbox" in lowered)

        def body() -> bytes:
            with tx.open() as f:
                return f.read(BODY_LIMIT)

        domain = rcpt.rpartition("@")[2] if location == "MDA" else (tx.user or "").rpartition("@")[2]
        return SieveMessage(
            header_section=review.prefix() + tx.header_section, body=body, size=tx.size,
            mail_from=tx.mail_from, rcpt_to=rcpt, auth=tx.user, spamtest=spam, virustest=virus,
            mailbox_exists=mailbox_exists, now=datetime.fromtimestamp(self.clock(), UTC),
            environment={"domain": domain, "host": self.hostname, "location": location,
                         "phase": "during", "name": "xmail", "version": VERSION,
                         "remote-host": tx.helo, "remote-ip": tx.client_ip})

    # -- one recipient's outcome -------------------------------------------------------------------
    @defer.inlineCallbacks
    def _apply(self, review: Review, user: str, outcome: Outcome, rejected: list[tuple[str, str]],
               path: tuple[str, ...], receiving: set[str]) -> Any:
        """Record one user's actions; -> the hosted users it redirected to
        (work items for review)."""
        tx = review.transaction
        for error in outcome.errors:
            self._log.warn("{id}: sieve error for {user}: {error}", id=tx.id, user=user, error=error)
            review.notes.append(f"sieve {user}: error: {error}")
        filings: list[Filing] = []
        targets: list[tuple[str, str, tuple[str, ...]]] = []
        why = "sieve discard"
        for action in outcome.actions:
            if isinstance(action, Keep):
                filings.append(Filing(review.folder(user), action.flags))
            elif isinstance(action, FileInto):
                filings.append(Filing(action.mailbox, action.flags, action.create))
            elif isinstance(action, Redirect):
                target = self._hosted_user(action.address)
                if target in path or (target is None and self._looping(tx, user)) or len(path) > MAX_HOPS:
                    # Back to someone it came through: a loop.  Kept here.
                    review.notes.append(f"sieve {user}: redirect to {action.address} skipped (loop), kept")
                    filings.append(Filing(review.folder(user)))
                    continue
                why = "sieve redirect"
                if target is not None:
                    # A hosted user: stored here, after their own rules.
                    if target not in receiving:
                        receiving.add(target)
                        targets.append((target, action.address, (*path, target)))
                    continue
                review.outgoing.append(Outgoing(
                    "redirect", self.srs.forward(tx.mail_from, user.rpartition("@")[2]), (action.address,),
                    prefix=f"{REDIRECT_MARK}: <{user}>\r\n".encode(), required=True))
            elif isinstance(action, Reject):
                rejected.append((user, action.reason))
                why = "sieve reject"
            elif isinstance(action, Vacation):
                yield self._vacation(review, user, action)
            elif isinstance(action, Discard):
                pass
        if outcome.actions:
            review.notes.append(f"sieve {user}: " + "; ".join(describe(a) for a in outcome.actions))
        filings = _unique(filings)
        if not filings:
            review.discard(user, why)
        elif len(path) > 1 or filings != [Filing(review.folder(user))]:
            review.filings[user] = filings
        return targets

    def _hosted_user(self, address: str) -> str | None:
        try:
            return self.directory.resolve(address.lower())
        except ValueError:
            return None

    def _looping(self, tx: Transaction, user: str) -> bool:
        if REDIRECT_MARK.lower().encode() not in tx.header_section.lower():
            return False  # most messages: no field read at all
        marks = scan_header_section(tx.header_section, frozenset((REDIRECT_MARK.lower(),))).all(
            REDIRECT_MARK.lower())
        seen = {a.lower() for value in marks for a in mailboxes(value)}
        return user in seen or len(marks) >= MAX_HOPS

    @defer.inlineCallbacks
    def _vacation(self, review: Review, user: str, action: Vacation) -> Any:
        tx = review.transaction
        if len(tx.header_section) > INLINE_HEADER:
            header = yield self.work.run(scan_header_section, tx.header_section)
        else:
            header = scan_header_section(tx.header_section)

        def own(address: str) -> bool:
            try:
                return self.directory.resolve(address) == user
            except ValueError:
                return False

        no = refusal(header, tx.mail_from, own, action.addresses)
        if no is None and self.memory.replied(user, action.handle, tx.mail_from):
            no = "replied within the period"
        if no is not None:
            review.notes.append(f"sieve {user}: no vacation reply ({no})")
            return
        from_ = None
        if action.from_:
            found = mailboxes(action.from_)
            # RFC 5230 §4.4 :from: only one of the user's own addresses.
            if found and self.directory.may_send_as(user, found[0]):
                from_ = action.from_
        data = compose_reply(user=user, from_=from_, to=tx.mail_from, subject=action.subject,
                             reason=action.reason, original=header, hostname=self.hostname,
                             mime=action.mime, now=self.clock())
        review.outgoing.append(Outgoing("vacation", "", (tx.mail_from,), data=data))
        yield self.memory.remember(user, action.handle, tx.mail_from, action.seconds)

    def _rejections(self, review: Review, rejected: list[tuple[str, str]]) -> None:
        tx = review.transaction
        refusing = {user for user, _reason in rejected}
        everyone = set(tx.local_users) <= refusing and not any(r.user is None for r in tx.recipients) \
            and not review.filings and not review.outgoing
        if everyone:
            # RFC 5429 §2.1: refusing in the SMTP dialogue is the preferred
            # way to reject; nothing is stored or sent.
            review.decide(Verdict.reject(_one_line(rejected[0][1]) or "Message rejected",
                                         code=550, status="5.7.1", stage=self.name))
            return
        for user, reason in rejected:
            review.discard(user, "sieve reject")
            if tx.mail_from:
                review.outgoing.append(Outgoing("reject", "", (tx.mail_from,),
                                                data=_rejection_notice(user, tx, reason, self.hostname)))

    # -- submission: the sender's domain scripts ---------------------------------------------------
    @defer.inlineCallbacks
    def _submission(self, review: Review) -> Any:
        tx = review.transaction
        domain = (tx.user or "").rpartition("@")[2]
        chain = self.scripts.domain_chain(domain)
        if not chain:
            return
        outcome: Outcome = yield self._evaluate(review, tx.user or "", tx.user or "", chain, location="MS")
        for error in outcome.errors:
            review.notes.append(f"sieve {domain}: error: {error}")
        kept = False
        for action in outcome.actions:
            if isinstance(action, Keep):
                kept = True
            elif isinstance(action, Redirect):
                review.outgoing.append(Outgoing("redirect", tx.mail_from, (action.address,),
                                                prefix=f"{REDIRECT_MARK}: <{tx.user}>\r\n".encode(),
                                                required=True))
            elif isinstance(action, Reject):
                review.decide(Verdict.reject(_one_line(action.reason) or "Message rejected",
                                             code=550, status="5.7.1", stage=self.name))
            elif isinstance(action, FileInto | Vacation):
                review.notes.append(f"sieve {domain}: {describe(action)} ignored on submission")
                kept = kept or isinstance(action, FileInto)
        if outcome.actions:
            review.notes.append(f"sieve {domain}: " + "; ".join(describe(a) for a in outcome.actions))
        if not kept and not review.final:
            review.dropped = "sieve discard"


def _unique(filings: list[Filing]) -> list[Filing]:
    """One copy per folder (RFC 5228 §4.1: filing twice into one folder
    stores one copy); the flags of the first."""
    seen: set[str] = set()
    out = []
    for filing in filings:
        key = "INBOX" if filing.folder.upper() == "INBOX" else filing.folder
        if key not in seen:
            seen.add(key)
            out.append(filing)
    return out


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]


def _rejection_notice(user: str, tx: Transaction, reason: str, hostname: str) -> bytes:
    """RFC 5429 §2.1: the sender learns the message was refused and why."""
    import email.utils
    header = scan_header_section(tx.header_section, frozenset(("subject", "message-id")))
    subject = " ".join((header.first("subject") or "").split())[:200]
    lines = [
        f"From: Mail Delivery System <MAILER-DAEMON@{hostname}>",
        f"To: <{tx.mail_from}>",
        "Subject: Message rejected" + (f": {subject}" if subject.isascii() and subject else ""),
        f"Date: {email.utils.formatdate()}",
        f"Message-ID: {email.utils.make_msgid(domain=hostname)}",
        "Auto-Submitted: auto-replied (rejected)",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ]
    message_id = header.first("message-id")
    if message_id:
        lines.append(f"In-Reply-To: {message_id[:900]}")
    body = (f"Your message to {user} was rejected by the recipient's filter rules.\r\n\r\n"
            f"Reason: {reason.strip()}\r\n")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()
