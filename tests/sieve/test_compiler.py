# -*- test-case-name: tests.sieve.test_compiler -*-
"""compile_script: what a script must be before it is stored (issue 18)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xmail.sieve.compiler import EXTENSIONS, Script, Var, compile_script
from xmail.sieve.interfaces import MAX_NESTING, MAX_SCRIPT_SIZE, SieveScriptError


def refused(text: bytes | str) -> SieveScriptError:
    with pytest.raises(SieveScriptError) as info:
        compile_script(text)
    return info.value


def test_compiles_to_a_frozen_tree_with_unquoted_strings():
    script = compile_script(b'require ["fileinto"];\r\nif header :contains "Subject" "a\\"b" {\r\n'
                            b'  fileinto "Lists";\r\n} else { keep; }\r\n', name="main")
    assert isinstance(script, Script) and script.name == "main"
    assert script.extensions == {"fileinto"}
    (chain,) = script.commands
    assert chain.name == "if" and chain.line == 2
    (test, block), (no_test, other) = chain.branches
    assert test.name == "header" and test.tags["match"] == "contains"
    assert test.args["header-names"] == ("Subject",) and test.args["key-list"] == ('a"b',)
    assert block[0].name == "fileinto" and block[0].args["mailbox"] == "Lists" and block[0].line == 3
    assert no_test is None and other[0].name == "keep"
    with pytest.raises(TypeError):
        test.tags["match"] = "is"  # read-only: safe to share between threads


def test_str_and_bytes_compile_alike():
    text = 'require "fileinto"; fileinto "Été";'
    assert compile_script(text) == compile_script(text.encode())


def test_invalid_utf8_is_refused_with_its_line():
    error = refused(b'keep;\n# caf\xe9\nkeep;')
    assert "UTF-8" in error.message and error.line == 2


def test_size_limit():
    big = b"#" + b"x" * MAX_SCRIPT_SIZE + b"\nkeep;"
    assert "larger" in refused(big).message
    compile_script(b"#" + b"x" * (MAX_SCRIPT_SIZE - 10) + b"\nkeep;")


@pytest.mark.parametrize("deep", [
    b"if true {" * 1000 + b"}" * 1000,
    b"if " + b"anyof(" * 1000 + b"true" + b")" * 1000 + b" {}",
    b"if " + b"not " * 1000 + b"true {}",
    b"if true {" * 7000,
], ids=["blocks", "anyof", "not", "unclosed"])
def test_deep_nesting_is_refused_fast(deep):
    started = time.perf_counter()
    error = refused(deep)
    assert time.perf_counter() - started < 0.5
    assert "nested" in error.message and error.line == 1


def test_nesting_up_to_the_limit_compiles():
    compile_script(b"if true {" * MAX_NESTING + b"keep;" + b"}" * MAX_NESTING)
    assert "nested" in refused(b"if true {" * (MAX_NESTING + 1) + b"}" * (MAX_NESTING + 1)).message


def test_brackets_in_strings_and_comments_do_not_count():
    braces = "{" * 100
    compile_script(f'# {braces}\n/* {braces} */\nif header :is "x" "{braces}" {{ keep; }}\n')
    compile_script(f'require "vacation";\nvacation text:\n{braces}\n..\n.\n;\n')


def test_syntax_error_carries_sievelib_line():
    error = refused(b'keep;\n\nif header :is "a" "b" {\n  keep\n}\n')
    assert error.line in (4, 5)
    assert refused(b'keep;\nfoo;\n').line == 2


def test_unknown_extension_and_missing_require():
    error = refused(b'require ["fileinto", "x-unknown"];\nkeep;')
    assert "x-unknown" in error.message and error.line == 1
    error = refused(b'keep;\n\nfileinto "x";')
    assert "fileinto" in error.message and error.line == 3
    assert "regex" in refused(b'require "regex";').message
    assert "i;ascii-numeric" in refused(b'if header :comparator "i;ascii-numeric" "x" "1" {}').message
    assert "spamtestplus" in refused(b'require "spamtest"; if spamtest :percent "50" {}').message


def test_require_must_come_first():
    error = refused(b'keep;\nrequire "fileinto";')
    assert error.line == 2


def test_semantic_checks_have_lines():
    assert refused(b'require "date";\n\nif currentdate "fortnight" "1" {}').line == 3
    compile_script(b'require "date";\nif currentdate :zone "+9999" "year" "1" {}')  # local zone then
    assert refused(b'require "index";\nif header :index 0 "x" "y" {}').line == 2
    assert refused(b'require "imap4flags";\nsetflag "v" "x";').line == 2
    assert refused(b'require "vacation";\nvacation :from "not an address" "x";').line == 2
    compile_script(b'require "vacation"; vacation :from "Bob <bob@example.com>" "x";')
    assert refused(b'if size :over 99999999999999999999 {}').line == 1
    assert refused(b'require "relational"; if header :count "GE" "a" "1" {}').line == 1
    assert refused(b'require ["comparator-i;ascii-numeric"];\n'
                   b'if header :contains :comparator "i;ascii-numeric" "x" "1" {}').line == 2
    assert refused(b'require "variables";\nset "1" "x";').line == 2
    assert refused(b'require "include";\ninclude "../x";').line == 2


def test_pigeonhole_compile_rules():
    assert "not allowed" in refused(b'keep;\nif address :is "subject" "x" { discard; }').message
    compile_script(b'if address :is ["from", "Delivered-To", "resent-bcc"] "x" { discard; }')
    compile_script(b'if header :is "sub ject" "x" { discard; }')  # no field of that name: false
    assert refused(b'require "variables";\nset "a.b" "x";').line == 2
    compile_script(b'require ["variables", "include"]; set "global.a" "x";')
    assert refused(b'require "envelope"; if envelope "orcpt" "x" {}').message.startswith("unknown envelope")


def test_extensions_list():
    for name in ("fileinto", "reject", "ereject", "envelope", "encoded-character", "imap4flags", "copy",
                 "body", "vacation", "vacation-seconds", "relational", "comparator-i;ascii-numeric",
                 "subaddress", "variables", "date", "index", "include", "mailbox", "spamtest",
                 "virustest", "environment"):
        assert name in EXTENSIONS
        compile_script(f'require "{name}";')


def test_multiline_strings_are_dot_unstuffed():
    script = compile_script(b'require "vacation";\nvacation text: # comment\r\nline 1\r\n..dot\r\n.\r\n;\n')
    assert script.commands[0].args["reason"] == "line 1\r\n.dot\r\n"
    lf = compile_script(b'require "vacation";\nvacation text:\na\nb\n.\n;\n')
    assert lf.commands[0].args["reason"] == "a\r\nb\r\n"  # CRLF, as Pigeonhole has it


def test_variables_become_templates_and_encoded_characters_decode():
    script = compile_script(b'require ["variables", "fileinto", "encoded-character"];\n'
                            b'fileinto "a${Name}b${1}${hex:41 42}${unicode:4e2d}${bad";')
    assert script.commands[0].args["mailbox"] == ("a", Var("name"), "b", Var("1"), "AB\u4e2d${bad")
    plain = compile_script(b'require "fileinto"; fileinto "${hex:41}";')
    assert plain.commands[0].args["mailbox"] == "${hex:41}"


def test_encoded_characters_need_one_blank_separated_value():
    # RFC 5228 §2.4.2.4: hex-pair-seq / unicode-hex-seq hold at least one
    # value, values separated by blanks; anything else stays as written.
    script = compile_script(b'require ["fileinto", "encoded-character"];\n'
                            b'fileinto "${hex:}${unicode: }${hex:4142}${hex: 4 41 }${unicode:41 }";')
    assert script.commands[0].args["mailbox"] == "${hex:}${unicode: }${hex:4142}\x04AA"


def test_numbers_with_quantifiers():
    script = compile_script(b'if size :over 10K { discard; }')
    assert script.commands[0].branches[0][0].args["limit"] == 10240


def test_includes_are_recorded():
    script = compile_script(b'require "include";\ninclude :global "spam";\ninclude "mine";\ninclude "mine";')
    assert script.includes == (("spam", True), ("mine", False))


def test_sievelib_gaps_are_registered():
    compile_script(b'require ["ereject", "mailbox", "spamtestplus", "virustest", "variables", "index",'
                   b' "date", "subaddress", "envelope", "relational", "comparator-i;ascii-numeric",'
                   b' "include"];\n'
                   b'if mailboxexists "x" { ereject "no"; }\n'
                   b'if spamtest :percent :value "ge" :comparator "i;ascii-numeric" "50" { discard; }\n'
                   b'if virustest :value "eq" :comparator "i;ascii-numeric" "5" { discard; }\n'
                   b'if string :is "${a}" "" { return; }\n'
                   b'if header :index 2 :last "received" "x" { stop; }\n'
                   b'if date :index 1 :zone "+0100" "date" "year" "2020" { stop; }\n'
                   b'if envelope :detail "to" "x" { stop; }\n'
                   b'global "g";\n')


TOKENS = ['require', 'if', 'elsif', 'else', 'not', 'anyof', 'allof', 'header', 'address', 'envelope',
          'fileinto', 'keep', 'discard', 'redirect', 'vacation', 'set', 'string', 'include', 'return',
          ':is', ':matches', ':contains', ':count', ':value', ':comparator', ':days', ':flags', ':index',
          '"fileinto"', '"variables"', '"a${1}"', '"i;ascii-numeric"', '"ge"', '["a", "b"]', '10K', '0',
          '{', '}', '(', ')', '[', ']', ';', ',', ' ', '\n', '#c\n', '/* c */', 'text:\nx\n.\n', '"', '\\',
          '\xe9', '${hex:41}']


@given(st.lists(st.sampled_from(TOKENS), max_size=40) | st.binary(max_size=200))
@settings(max_examples=400, deadline=None)
def test_any_input_compiles_or_is_refused(parts):
    text = parts if isinstance(parts, bytes) else " ".join(parts).encode()
    try:
        compile_script(text)
    except SieveScriptError as e:
        assert e.line is None or e.line >= 1


def test_compiling_in_threads():
    texts = [f'require ["fileinto", "variables"];\nif header :matches "subject" "*{i}*" {{\n'
             f'  fileinto "F{i}/${{1}}";\n}}\n' for i in range(40)]
    expected = [compile_script(t) for t in texts]
    with ThreadPoolExecutor(8) as pool:
        for _ in range(3):
            assert list(pool.map(compile_script, texts)) == expected
    # errors, with their lines, are per thread too
    bad = [f'{"keep;" * i}\n' * i + "fileinto \"x\";" for i in range(1, 30)]
    with ThreadPoolExecutor(8) as pool:
        lines = list(pool.map(lambda t: refused(t).line, bad))
    assert lines == [i + 1 for i in range(1, 30)]


def test_every_command_and_test_carries_its_line():
    script = compile_script(b'require ["fileinto", "vacation"];\n'   # 1
                            b'# if false { }\n'                      # 2
                            b'if anyof (header :is "a" "b",\n'       # 3
                            b'          not\n'                       # 4
                            b'          exists "c") {\n'             # 5
                            b'  vacation text:\n'                    # 6
                            b'keep; if\n'                            # 7
                            b'.\n'                                   # 8
                            b'  ;\n'                                 # 9
                            b'} elsif /* if\n*/ true { fileinto "x"; }\n'  # 10-11
                            b'discard;\n')                           # 12
    chain, discard = script.commands
    (anyof, block), (true, other) = chain.branches
    assert (chain.line, anyof.line, anyof.tests[0].line, anyof.tests[1].line) == (3, 3, 3, 4)
    assert anyof.tests[1].tests[0].line == 5
    assert block[0].name == "vacation" and block[0].line == 6
    assert (true.line, other[0].line, discard.line) == (11, 11, 12)


def test_last_command_needs_its_semicolon():
    # RFC 5228 §8.2: command = identifier arguments (";" / block).
    for text, line in ((b"stop\n", 2), (b"keep", 1), (b'keep;\r\ndiscard # no end', 2)):
        with pytest.raises(SieveScriptError) as caught:
            compile_script(text)
        assert caught.value.line == line, text
    for text in (b"", b"# only a comment\n", b"keep; /* end */\n", b"if true { keep; }"):
        compile_script(text)
