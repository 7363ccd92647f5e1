# -*- test-case-name: tests.sieve.test_interpreter -*-
"""evaluate(): every extension of issue 18, the script sequence, runtime errors."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from xmail.sieve.actions import Discard, FileInto, Keep, Redirect, Reject, Vacation, describe
from xmail.sieve.compiler import compile_script
from xmail.sieve.interfaces import MAX_REDIRECTS, SieveScriptError
from xmail.sieve.interpreter import evaluate
from xmail.sieve.message import SieveMessage

HEADER = (b"Return-Path: <alice@example.org>\r\n"
          b"Received: from a by b; Sat, 05 Dec 2026 10:00:00 +0000\r\n"
          b"Received: from c by d; Sun, 06 Dec 2026 11:00:00 +0000\r\n"
          b"From: Alice Example <alice+lists@Example.org>\r\n"
          b"To: Bob <bob@example.com>, carol@example.com\r\n"
          b"Cc: undisclosed-recipients:;\r\n"
          b"Subject: =?utf-8?q?R=C3=A9union?= [project] weekly\r\n"
          b"Date: Sun, 06 Dec 2026 06:30:31 +0100\r\n"
          b"X-Priority: 2\r\n"
          b"MIME-Version: 1.0\r\n"
          b"Content-Type: multipart/alternative; boundary=b\r\n\r\n")
BODY = (b"--b\r\nContent-Type: text/plain;"
        b" charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"Caf=C3=A9 at noon\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>Lunch <b>menu</b></p>\r\n--b--\r\n")


def message(**kw) -> SieveMessage:
    calls = kw.pop("calls", None)

    def body() -> bytes:
        if calls is not None:
            calls.append(1)
        return HEADER + BODY

    defaults = dict(body=body, size=len(HEADER + BODY), mail_from="alice@example.org",
                    rcpt_to="bob+tag@example.com", auth=None, spamtest=7, virustest=1,
                    mailbox_exists=lambda name: name in ("INBOX", "Work"),
                    now=datetime(2026, 12, 6, 23, 30, tzinfo=UTC),
                    environment={"domain": "example.com", "location": "MDA", "phase": "during",
                                 "name": "xmail"})
    defaults.update(kw)
    return SieveMessage(HEADER, **defaults)


def run(*texts: str, include=None, **kw) -> list[str]:
    outcome = outcome_of(*texts, include=include, **kw)
    assert outcome.errors == []
    return [describe(a) for a in outcome.actions]


def outcome_of(*texts: str, include=None, **kw):
    scripts = [compile_script(t, name=f"s{i}") for i, t in enumerate(texts)]
    extra = {"include": include} if include else {}
    return evaluate(scripts, message(**kw), **extra)


def test_empty_chain_and_empty_script_keep_implicitly():
    assert evaluate([], message()).actions == [Keep(implicit=True)]
    assert outcome_of("").actions == [Keep(implicit=True)]


def test_basic_actions():
    assert run('require "fileinto"; fileinto "Work";') == ["fileinto 'Work'"]
    assert outcome_of('require "fileinto"; fileinto "Work"; keep;').actions == [FileInto("Work"), Keep()]
    assert outcome_of("discard;").actions == [Discard()]
    assert outcome_of('redirect "x@example.net";').actions == [Redirect("x@example.net")]
    assert outcome_of('require "copy"; redirect :copy "x@example.net";').actions == [
        Redirect("x@example.net", copy=True), Keep(implicit=True)]
    assert outcome_of('require "reject"; reject "go away";').actions == [Reject("go away")]
    assert outcome_of('require "ereject"; ereject "no";').actions == [Reject("no", extended=True)]
    assert run("keep; stop; discard;") == ["keep"]


def test_duplicates_collapse():
    assert run('require "fileinto"; fileinto "A"; fileinto "A"; fileinto "inbox"; keep;') == [
        "fileinto 'A'", "fileinto 'inbox'"]
    assert run('redirect "a@b.example"; redirect "A@b.example";') == ["redirect <a@b.example>"]


def test_header_address_envelope():
    assert run('if header :contains "subject" "Réunion" { discard; }') == ["discard"]
    assert run('if header :is "x-priority" "2" { discard; }') == ["discard"]
    assert run('if address :domain "from" "example.org" { discard; }') == ["discard"]
    assert run('if address :all :comparator "i;octet" "to" "carol@example.com" { discard; }') == ["discard"]
    assert run('if address :localpart "to" "bob" { discard; }') == ["discard"]
    assert run('require "envelope"; if envelope :is "from" "alice@example.org" { discard; }') == ["discard"]
    assert run('require "envelope"; if envelope :is "from" "" { discard; }', mail_from="") == ["discard"]
    assert run('if exists ["from", "date"] { discard; }') == ["discard"]
    assert run('if exists ["from", "nope"] { discard; }') == ["keep"]
    assert run('if size :over 100 { discard; }') == ["discard"]
    assert run('if size :under 100 { discard; }') == ["keep"]
    assert run('if anyof (false, not true, allof (true, true)) { discard; }') == ["discard"]


def test_subaddress():
    assert run('require "subaddress"; if address :user "from" "alice" { discard; }') == ["discard"]
    assert run('require "subaddress"; if address :detail "from" "lists" { discard; }') == ["discard"]
    assert run('require ["subaddress", "envelope"]; if envelope :detail "to" "tag" { discard; }') == [
        "discard"]
    # no "+": no detail, the test does not match
    assert run('require ["subaddress", "envelope"]; if envelope :detail "from" "" { discard; }') == ["keep"]


def test_variables_and_match_variables():
    script = ('require ["variables", "fileinto"];\n'
              'if header :matches "subject" "* [*] *" { set :lower :upperfirst "p" "${2}"; }\n'
              'set "n" "${p}-${unknown}";\n'
              'set :length "len" "${n}";\n'
              'if string :is "${len}" "8" { fileinto "Lists/${n}"; }')
    assert run(script) == ["fileinto 'Lists/Project-'"]
    assert run('require ["variables", "fileinto"]; set :quotewildcard "q" "a*b?"; fileinto "${q}";') == [
        "fileinto 'a\\\\*b\\\\?'"]
    assert run('require ["variables", "relational", "comparator-i;ascii-numeric"];\n'
               'if string :count "eq" :comparator "i;ascii-numeric" ["a", "", "b"] "2" { discard; }') == [
                   "discard"]


def test_imap4flags():
    assert outcome_of('require "imap4flags"; setflag "\\\\Seen"; addflag ["$Work", "\\\\seen"];').actions == [
        Keep(("\\Seen", "$Work"), implicit=True)]
    assert outcome_of('require ["imap4flags", "fileinto"]; addflag "A B"; removeflag "a";'
                      'fileinto :flags "X" "Work"; fileinto "Other";').actions == [
        FileInto("Work", ("X",)), FileInto("Other", ("B",))]
    assert run('require ["imap4flags", "variables"]; setflag "v" "one two";'
               'if hasflag :is "v" "two" { discard; }') == ["discard"]
    assert run('require "imap4flags"; addflag "x"; if hasflag "y" { discard; }') == ["keep flags=(x)"]


def test_body():
    calls: list[int] = []
    assert run('require "body"; if body :contains "café" { discard; }', calls=calls) == ["discard"]
    assert run('require "body"; if body :text :contains "menu" { discard; }') == ["discard"]
    assert run('require "body"; if body :raw :contains "Caf=C3=A9" { discard; }') == ["discard"]
    assert run('require "body"; if body :content "text/html" :contains "<b>" { discard; }') == ["discard"]
    assert run('require "body"; if body :content "text/plain" :contains "<b>" { discard; }') == ["keep"]
    assert run('require ["body", "variables", "fileinto"];'
               'if body :raw :matches "*" { fileinto "[${1}]"; }') == [
        "fileinto '[]'"]  # no match variables from a body test (Pigeonhole)
    no_body: list[int] = []
    run('if true { keep; }', calls=no_body)
    assert calls and not no_body  # the body is read only for a body test


def test_body_of_an_empty_or_header_only_message():
    # Pigeonhole: an empty body has no :raw value (even :is "" is false) but
    # one empty text part; a message without a blank line has no body at all.
    script = ('require ["body", "fileinto"];'
              'if body :raw :is "" { fileinto "raw"; }'
              'if body :text :is "" { fileinto "text"; }'
              'if body :content "text" :contains "" { fileinto "content"; }')
    header = b"From: a@example.org\r\nContent-Type: text/plain\r\n"
    assert run(script, body=lambda: header + b"\r\n") == ["fileinto 'text'", "fileinto 'content'"]
    assert run(script, body=lambda: header) == ["keep"]
    assert run(script, body=lambda: header + b"\r\nx\r\n") == ["fileinto 'content'"]


def test_vacation():
    (vacation, keep) = outcome_of('require "vacation"; vacation "away";').actions
    assert vacation == Vacation("away", handle="away<default-subject><default-from><NO-MIME>")
    assert vacation.seconds == 7 * 86400 and keep == Keep(implicit=True)
    (vacation, _) = outcome_of('require "vacation"; vacation :days 3 :subject "s" :from "b@example.com"'
                               ' :addresses ["b2@example.com"] :handle "h" "away";').actions
    assert (vacation.seconds, vacation.subject, vacation.from_, vacation.addresses, vacation.handle) == (
        3 * 86400, "s", "b@example.com", ("b2@example.com",), "h")
    (vacation, _) = outcome_of('require ["vacation", "vacation-seconds"];'
                               ' vacation :seconds 172800 "x";').actions
    assert vacation.seconds == 172800


def test_date_and_index():
    assert run('require "date"; if date :originalzone "date" "hour" "06" { discard; }') == ["discard"]
    assert run('require "date"; if date "date" "hour" "05" { discard; }') == ["discard"]  # UTC: now's zone
    assert run('require "date"; if date :zone "+0900" "date" "date" "2026-12-06" { discard; }') == ["discard"]
    assert run('require "date"; if date :originalzone "date" "weekday" "0" { discard; }') == ["discard"]
    assert run('require "date"; if currentdate :zone "+0100" "date" "2026-12-07" { discard; }') == ["discard"]
    assert run('require "date"; if currentdate "iso8601" "2026-12-06T23:30:00Z" { discard; }') == [
        "discard"]
    assert run('require "date"; if currentdate "std11" "Sun, 06 Dec 2026 23:30:00 +0000" { discard; }') == [
        "discard"]
    assert run('require ["date", "index"];'
               ' if header :index 2 :contains "received" "c by d" { discard; }') == [
        "discard"]
    assert run('require ["date", "index"]; if date :index 1 :last "received" "day" "06" { discard; }') == [
        "discard"]
    assert run('require ["index"]; if header :index 1 :last :contains "received" "a by b" { discard; }') == [
        "keep"]


def test_environment_spamtest_virustest_mailboxexists():
    assert run('require "environment"; if environment :is "location" "MDA" { discard; }') == ["discard"]
    assert run('require "environment"; if environment :contains "nothing" "" { discard; }') == ["keep"]
    numeric = '"relational", "comparator-i;ascii-numeric"'
    assert run(f'require ["spamtest", {numeric}];'
               'if spamtest :value "ge" :comparator "i;ascii-numeric" "6" { discard; }') == ["discard"]
    assert run(f'require ["spamtestplus", {numeric}];'
               'if spamtest :percent :value "eq" :comparator "i;ascii-numeric" "67" { discard; }') == [
                   "discard"]
    assert run(f'require ["virustest", {numeric}];'
               'if virustest :value "eq" :comparator "i;ascii-numeric" "1" { discard; }') == ["discard"]
    assert run('require "mailbox"; if mailboxexists ["Work", "INBOX"] { discard; }') == ["discard"]
    assert run('require "mailbox"; if mailboxexists "Nope" { discard; }') == ["keep"]
    assert outcome_of('require ["mailbox", "fileinto"]; fileinto :create "New";').actions == [
        FileInto("New", create=True)]


def test_encoded_character():
    assert run('require ["encoded-character", "fileinto"]; fileinto "${hex:41 42}${unicode:263a}";') == [
        "fileinto 'AB\u263a'"]


# --- the sequence (Pigeonhole's sieve_before / sieve_after) -----------------------------

def test_keep_in_a_before_script_lets_the_next_run_and_stores_once():
    assert run('require "fileinto"; fileinto "Foo"; keep;',
               'require ["fileinto", "vacation"]; fileinto "Foo"; fileinto "INBOX"; vacation "hi";') == [
        "fileinto 'Foo'", "fileinto 'INBOX'",
        "vacation seconds=604800 subject=None from=None handle='hi<default-subject><default-from><NO-MIME>'"]


def test_discard_stop_in_a_before_script_ends_the_sequence():
    assert run("discard; stop;", 'require "fileinto"; fileinto "Never";') == ["discard"]
    # stop alone ends only that script: the implicit keep lets the next run
    assert run("stop;", 'require "fileinto"; fileinto "Next";') == ["fileinto 'Next'"]


def test_implicit_keep_only_at_the_end():
    assert outcome_of("keep;", "").actions == [Keep(implicit=True)]
    assert outcome_of("", "keep;").actions == [Keep()]
    assert run('require ["fileinto", "copy"]; fileinto :copy "Copy";',
               'require "fileinto"; fileinto "Work";') == [
        "fileinto 'Copy' :copy", "fileinto 'Work'"]


def test_variables_do_not_cross_scripts():
    assert run('require "variables"; set "a" "1";',
               'require "variables"; if string :is "${a}" "" { discard; }') == ["discard"]


# --- includes --------------------------------------------------------------------------

def test_include_return_global():
    library = {
        ("spam", True): compile_script('require ["include", "variables", "fileinto"]; global "box";'
                                       'if header :contains "subject" "weekly" { fileinto "${box}"; return; }'
                                       'discard;', name="spam"),
        ("loop", False): compile_script('require "include"; include "loop";', name="loop"),
    }

    def include(name: str, global_: bool):
        return library.get((name, global_))

    assert run('require ["include", "variables"]; global "box"; set "box" "Weekly";'
               'include :global "spam"; keep;', include=include) == ["fileinto 'Weekly'", "keep"]
    outcome = outcome_of('require "include"; include "missing";', include=include)
    assert outcome.actions == [Keep()] and "missing" in outcome.errors[0]
    outcome = outcome_of('require "include"; include "loop";', include=include)
    assert outcome.actions == [Keep()] and "recursive" in outcome.errors[0]
    assert run('require "include"; include :optional "missing";', include=include) == ["keep"]


# --- runtime errors keep (RFC 5228 §2.10.6) ---------------------------------------------

@pytest.mark.parametrize("script, words", [
    ("".join(f'redirect "u{i}@example.net";' for i in range(MAX_REDIRECTS + 1)), "redirects"),
    ('require ["reject", "fileinto"]; fileinto "x"; reject "no";', "conflicts"),
    ('require ["reject"]; keep; reject "no";', "conflicts"),
    ('require ["reject"]; reject "a"; reject "b";', "reject"),
    ('require "vacation"; vacation "a"; vacation :handle "2" "b";', "vacation"),
    ('require "variables"; set "a" "x y"; redirect "${a}";', "invalid redirect"),
])
def test_runtime_errors_keep_the_message(script, words):
    outcome = outcome_of('require ["fileinto", "copy"]; fileinto :copy "Before";', script)
    assert outcome.actions == [Keep()]
    assert len(outcome.errors) == 1 and words in outcome.errors[0]
    assert outcome.errors[0].startswith("s1: line 1")


def test_include_depth_limit():
    def include(name: str, global_: bool):
        depth = int(name)
        return compile_script(f'require "include"; include "{depth + 1}";', name=name)

    outcome = outcome_of('require "include"; include "0";', include=include)
    assert outcome.actions == [Keep()] and "deeper" in outcome.errors[0]


def test_compiled_scripts_are_reusable():
    script = compile_script('require ["variables", "fileinto"]; if header :matches "from" "*@*" {'
                            ' fileinto "${2}"; }')
    first = evaluate([script], message())
    second = evaluate([script], message())
    assert first.actions == second.actions == [FileInto("Example.org>")] or \
        first.actions == second.actions


# --- Pigeonhole's answers where the RFCs leave room (checked with sieve-test) -----------

def test_same_folder_again_takes_the_new_flags_and_keeps_the_implicit_keep():
    assert outcome_of('require ["imap4flags", "fileinto"]; fileinto :flags "a" "X"; fileinto :flags "b" "X";'
                      ).actions == [FileInto("X", ("b",))]
    assert outcome_of('require ["copy", "fileinto"]; fileinto :copy "A"; fileinto "A";').actions == [
        FileInto("A", copy=True), Keep(implicit=True)]


def test_an_earlier_scripts_store_keeps_its_flags():
    assert run('require ["fileinto", "copy"]; fileinto :copy "Archive";',
               'require ["fileinto", "imap4flags"]; fileinto :flags "\\\\Seen" "Archive"; keep;') == [
        "fileinto 'Archive' :copy", "keep"]


def test_flags_carry_over_the_sequence():
    assert outcome_of('require "imap4flags"; addflag "before";',
                      'require ["imap4flags", "fileinto"]; addflag "q"; fileinto "INBOX";').actions == [
        FileInto("INBOX", ("before", "q"))]


def test_vacation_once_per_sequence_and_clamped_to_a_day():
    (vacation, keep) = outcome_of('require "vacation"; vacation "b";',
                                  'require "vacation"; vacation "u";').actions
    assert vacation.reason == "b" and keep == Keep(implicit=True)
    for period in (':days 0', ':seconds 10', ':seconds 0'):
        script = f'require ["vacation", "vacation-seconds"]; vacation {period} "x";'
        (vacation, _) = outcome_of(script).actions
        assert vacation.seconds == 86400
    (vacation, _) = outcome_of('require "vacation"; vacation :days 100 "x";').actions
    assert vacation.seconds == 100 * 86400


def test_default_handle_uses_the_strings_as_written():
    (vacation, _) = outcome_of('require ["vacation", "variables"]; set "s" "S";'
                               'vacation :subject "${s}" :mime "x";').actions
    assert vacation.subject == "S" and vacation.handle == "x${s}<default-from><MIME>"


def test_reject_conflicts_with_vacation():
    outcome = outcome_of('require ["vacation", "reject"]; vacation "hi"; reject "x";')
    assert outcome.actions == [Keep()] and "conflicts" in outcome.errors[0]
    assert run('require "reject"; discard; reject "b";') == ["discard", "reject 'b'"]


def test_conflicts_are_checked_within_one_script():
    assert run('require ["fileinto", "copy"]; fileinto :copy "Archive";',
               'require "reject"; reject "no";') == [
        "fileinto 'Archive' :copy", "reject 'no'"]


def test_a_duplicate_is_dropped_wholesale():
    assert run('require "copy"; redirect :copy "a@example.net"; redirect "a@example.net";') == [
        "redirect <a@example.net> :copy", "keep"]
    assert run('require "copy"; redirect "a@example.net"; redirect :copy "a@example.net";') == [
        "redirect <a@example.net>"]
    assert run('require ["fileinto", "copy"]; fileinto :copy "Archive";',
               'require "fileinto"; fileinto "Archive";', 'require "fileinto"; fileinto "After";') == [
        "fileinto 'Archive' :copy", "fileinto 'After'"]


def test_redirect_addresses_must_be_addresses():
    assert run('redirect "<x@example.net>";') == ["redirect <x@example.net>"]
    with pytest.raises(SieveScriptError):
        compile_script('redirect "Quarterly review @ Mon Dec 14";')
    outcome = outcome_of('require "variables"; set "a" "Invitation: Quarterly review @ Mon Dec 14";'
                         'redirect "${a}";')
    assert outcome.actions == [Keep()] and "invalid redirect" in outcome.errors[0]


def test_fields_without_an_address_are_one_item_for_all_only():
    header = b"To: undisclosed-recipients:;\r\nCc: Team: ann@x.org, bob@x.org;, carol@x.org\r\n\r\n"
    script = compile_script('require ["relational", "comparator-i;ascii-numeric", "fileinto", "variables"];'
                            'if address :count "ge" :comparator "i;ascii-numeric" ["to", "cc"] "4" {'
                            ' fileinto "four"; }'
                            'if address :matches :all "to" "*" { fileinto "all=${1}"; }'
                            'if address :matches :localpart "to" "*" { fileinto "never"; }')
    outcome = evaluate([script], SieveMessage(header))
    assert [describe(a) for a in outcome.actions] == [
        "fileinto 'four'", "fileinto 'all=undisclosed-recipients:;'"]
    empty = compile_script('require ["relational", "comparator-i;ascii-numeric", "fileinto"];'
                           'if address :count "eq" :comparator "i;ascii-numeric" "cc" "1" { fileinto "one"; }'
                           'if address :is "cc" "" { fileinto "empty"; }')
    outcome = evaluate([empty], SieveMessage(b"To: a@b.example\r\nCc:\r\n\r\n"))
    assert [describe(a) for a in outcome.actions] == ["fileinto 'one'", "fileinto 'empty'"]


def test_header_octets_that_are_not_utf8():
    msg = SieveMessage(b"Subject: Gr\xfc\xdfe aus K\xf6ln\r\n\r\n")
    script = compile_script('require "fileinto"; if header :is "subject" "Gr\ufffde aus K\ufffdln" {'
                            ' fileinto "x"; }')
    assert evaluate([script], msg).actions == [FileInto("x")]


def test_body_tests_see_the_whole_body_and_encapsulated_headers():
    big = b"Subject: big\r\n\r\n" + b"filler line\r\n" * 20000 + b"FINAL-MARKER\r\n"
    script = compile_script('require "body"; if body :text :contains "FINAL-MARKER" { discard; }')
    assert evaluate([script], SieveMessage(big[:14], body=lambda: big)).actions == [Discard()]
    forwarded = (b"Subject: fwd\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=z\r\n\r\n"
                 b"--z\r\nContent-Type: text/plain\r\n\r\nsee below\r\n"
                 b"--z\r\nContent-Type: message/rfc822\r\n\r\n"
                 b"Subject: Invoice 42\r\n\r\ninner body\r\n--z--\r\n")
    script = compile_script('require "body";'
                            'if body :content "message/rfc822" :contains "Invoice" { discard; }')
    assert evaluate([script], SieveMessage(b"", body=lambda: forwarded)).actions == [Discard()]


def test_matching_work_is_bounded_per_message():
    header = b"".join(b"Received: " + b"x" * 1000 + b"\r\n" for _ in range(1000)) + b"\r\n"
    keys = ", ".join(f'"k{i}"' for i in range(5000))
    script = compile_script(f'if header :contains "received" [{keys}] {{ discard; }}')
    started = time.perf_counter()
    outcome = evaluate([script], SieveMessage(header))
    assert time.perf_counter() - started < 2.0
    assert outcome.actions == [Keep()] and "too much matching" in outcome.errors[0]
    # an ordinary script on the same message is fine
    assert evaluate([compile_script('if header :contains "received" "k1" { discard; }')],
                    SieveMessage(header)).actions == [Keep(implicit=True)]
