# -*- test-case-name: tests.filter.test_build -*-
"""The delivery pipeline as configured: which stages, in which order.

Order (each stage's reason):
1. lists -- a blocked sender ends it cheaply; an allowed one is known to
   the spam stage;
2. authentication -- SPF, DKIM, DMARC, ARC (MX): the results feed the
   scanners' and later the filter rules' decisions;
3. antivirus -- a virus is refused whatever the lists say;
4. antispam -- skipped for allowed senders;
5. burst -- submissions only;
6. sieve -- the filter rules (xmail.sieve): they see every verdict above
   (spamtest, virustest, the added X-Spam-* fields) and decide folders,
   redirects, replies; on submission the sender's domain rules;
7. dkim-sign -- last, so only what every other stage let through is signed.
Later capabilities (approval holds, the journal) go before signing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from xmail.config import Settings
from xmail.dns import make_resolver
from xmail.filter.authcheck import AuthenticationStage
from xmail.filter.authcheck.dmarc import organizational_domain
from xmail.filter.burst import BurstStage
from xmail.filter.digest import SpamDigest
from xmail.filter.dkimkeys import DkimKeyStore
from xmail.filter.dkimsign import DkimSignStage
from xmail.filter.lists import SenderLists, SenderListStage, sender_check
from xmail.filter.pipeline import DeliveryPipeline
from xmail.filter.policy import dmarc_reject_to_junk, thresholds
from xmail.filter.scanners.learn import learner_from_settings
from xmail.filter.scanners.stages import scanner_stages
from xmail.filter.training import JunkTraining
from xmail.filter.work import FilterWork
from xmail.sieve.srs import SECRET_FILE, SRS, load_secret
from xmail.sieve.stage import SieveStage
from xmail.sieve.storage import SieveScripts
from xmail.sieve.vacation import VacationMemory


def load_package_data() -> None:
    """Read the data files the stages need (the Public Suffix List) now:
    the daemon calls this before dropping privileges, since the service
    user may not be able to read the installed package later."""
    organizational_domain("example.com")


@dataclass
class Protection:
    """What the service runs of mail protection: the pipeline SMTP uses,
    the digest the leader sends hourly, the thread pool behind both."""

    pipeline: DeliveryPipeline
    digest: SpamDigest
    work: FilterWork


def build_protection(settings: Settings, env: Any, directory: Any, store: Any, reactor: Any,
                     audit: Any = None, srs: SRS | None = None) -> Protection:
    work = FilterWork(reactor)
    # Moves into and out of Junk train rspamd ([filter] rspamd_controller).
    learner = learner_from_settings(settings, reactor, work)
    if learner is not None:
        store.transfer_observers.append(JunkTraining(store, learner).moved)
        reactor.addSystemEventTrigger("before", "shutdown", learner.stop)
    return Protection(build_pipeline(settings, env, directory, reactor, audit, work, store, srs),
                      SpamDigest(store, directory, settings.server.hostname, work.run, reactor.seconds),
                      work)


def build_pipeline(settings: Settings, env: Any, directory: Any, reactor: Any,
                   audit: Any = None, work: FilterWork | None = None, store: Any = None,
                   srs: SRS | None = None) -> DeliveryPipeline:
    work = work or FilterWork(reactor)
    lists = SenderLists(env)
    stages: list[Any] = [SenderListStage(lists)]
    # MX only; applies() also honours [filter] authenticate.
    stages.append(AuthenticationStage(make_resolver(settings.dns, reactor), work, settings.filter, reactor,
                                      dmarc_reject_to_junk=dmarc_reject_to_junk(directory)))
    # antivirus, then antispam (each only when configured).
    stages.extend(scanner_stages(settings, reactor, work, thresholds(directory, settings.filter)))
    stages.append(BurstStage(settings.filter.burst_per_minute, reactor.seconds, audit))
    if store is not None and directory is not None:
        srs = srs or SRS(load_secret(settings.path(SECRET_FILE)))
        stages.append(SieveStage(SieveScripts(env, write=env.write), store, directory, work,
                                 VacationMemory(env), srs, settings.server.hostname,
                                 thresholds=thresholds(directory, settings.filter),
                                 virus_scanning=bool(settings.filter.clamd)))
    # Last: only what every other stage let through is signed.
    if directory is not None:
        stages.append(DkimSignStage(DkimKeyStore(settings.path("dkim")), directory.is_local_domain, work))
    own = ("X-Spam-Status", "X-Spam-Score", "X-Spam-Flag") if settings.filter.rspamd else ()
    return DeliveryPipeline(stages, reactor, settings.server.hostname, sender_check=sender_check(lists),
                            own_fields=own, work=work, srs_reverse=srs.reverse if srs is not None else None)
