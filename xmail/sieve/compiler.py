# -*- test-case-name: tests.sieve.test_compiler -*-
"""Sieve scripts (RFC 5228) compiled into an immutable tree of our own.

`compile_script(text)` checks what can be checked before a message
exists and refuses with `SieveScriptError(message, line)`:

- invalid UTF-8 (RFC 5228 §2.2: scripts are UTF-8), more than
  MAX_SCRIPT_SIZE octets;
- blocks or tests nested deeper than MAX_NESTING, found by a linear
  pre-scan *before* sievelib sees the text (sievelib and any tree walk
  recurse; 1,000 nested blocks must cost a scan, not a stack);
- syntax errors, with the line sievelib reports;
- a `require` of an extension we do not run (RFC 5228 §3.2), or an
  extension used without its `require`;
- values that are wrong whatever the message: an unknown date part, a
  zone that is not +hhmm, :contains with i;ascii-numeric, a variable name
  that is not one (RFC 5229 §3), an include name with "/" (RFC 6609 §3.2).

The result, `Script`, holds frozen dataclasses, tuples and read-only
mappings: strings unquoted, multi-line strings dot-unstuffed, encoded
characters decoded (RFC 5228 §2.4.2.4), strings with `${...}` split into
literal parts and variable references (RFC 5229 §3) so evaluation never
re-parses them.  It is safe to share between threads and to evaluate
many times (xmail.sieve.interpreter).  sievelib keeps its parser state
in a threading.local, so compile_script is thread-safe too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sievelib.parser import Lexer, Parser

from xmail.sieve import grammar  # noqa: F401  (registers what sievelib lacks)
from xmail.sieve.interfaces import MAX_NESTING, MAX_SCRIPT_SIZE, SieveScriptError

# What `require` may name, advertised by ManageSieve (RFC 5804 §1.7 SIEVE).
EXTENSIONS: tuple[str, ...] = (
    "fileinto", "reject", "ereject", "envelope", "encoded-character", "imap4flags", "copy",
    "body", "vacation", "vacation-seconds", "relational", "comparator-i;ascii-numeric",
    "subaddress", "variables", "date", "index", "include", "mailbox", "spamtest",
    "spamtestplus", "virustest", "environment",
)
# RFC 4790 comparators every script has without a require (RFC 5228 §2.7.3).
_IMPLICIT = ("comparator-i;octet", "comparator-i;ascii-casemap")

# Fields the address test may read (RFC 5228 §5.1; Pigeonhole's list).
ADDRESS_FIELDS = frozenset((
    "from", "sender", "reply-to", "to", "cc", "bcc", "resent-from", "resent-sender", "resent-to",
    "resent-cc", "resent-bcc", "resent-reply-to", "delivered-to", "x-original-to", "errors-to",
    "return-receipt-to", "mail-followup-to", "mail-reply-to", "apparently-to"))
# RFC 5260 §4.2 date-part names.
DATE_PARTS = frozenset(("year", "month", "day", "date", "julian", "hour", "minute", "second",
                        "time", "iso8601", "std11", "zone", "weekday"))
# RFC 5229 §3: identifier = (ALPHA / "_") *(ALPHA / DIGIT / "_");
# variable-name = identifier *("." identifier); num-variable = 1*DIGIT.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_VARIABLE_REF = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*\Z|[0-9]+\Z")
# RFC 5228 §2.4.2.4: hex-pair-seq = *blank hex-pair *(1*blank hex-pair) *blank,
# hex-pair = 1*2HEXDIG; unicode-hex-seq likewise with unicode-hex = 1*HEXDIG.
# At least one, blank-separated: "${hex:}" and "${hex:4142}" stay as written
# (as in Pigeonhole).
_HEX_PAIRS = re.compile(r"[ \t\r\n]*[0-9A-Fa-f]{1,2}(?:[ \t\r\n]+[0-9A-Fa-f]{1,2})*[ \t\r\n]*\Z")
_UNICODE_HEX = re.compile(r"[ \t\r\n]*[0-9A-Fa-f]{1,6}(?:[ \t\r\n]+[0-9A-Fa-f]{1,6})*[ \t\r\n]*\Z")
MAX_NUMBER = 2**64 - 1      # Pigeonhole's limit on a number argument
MAX_REFERENCE_CHARS = 200   # longest "${...}" looked at as one reference
# RFC 5322 §3.4.1 addr-spec: dot-atom or quoted-string "@" dot-atom or
# domain-literal (UTF-8 allowed, RFC 6532).  Each repetition is anchored
# by a "." so a match attempt is linear.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]+"
_ADDR_SPEC = re.compile(rf'(?:{_ATEXT}(?:\.{_ATEXT})*|"(?:[^"\\\r\n]|\\.)*")'
                        rf"@(?:{_ATEXT}(?:\.{_ATEXT})*|\[[^\[\]\\\s]*\])\Z")


# --- the compiled tree -----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Var:
    """A `${name}` reference inside a string (RFC 5229 §3): a variable
    (name lower-cased: names are case-insensitive) or a match variable
    (digits)."""

    name: str


# A string argument: plain text, or a template of text and references.
Text = str | tuple[str | Var, ...]


@dataclass(frozen=True, slots=True)
class Test:
    """A test: `tags` holds the tagged arguments (match, relation,
    comparator, part, index, last, zone, transform, ...), `args` the
    positional ones by sievelib's names (key-list, header-names, ...)."""

    name: str
    line: int
    tags: Mapping[str, Any]
    args: Mapping[str, Any]
    tests: tuple[Test, ...] = ()


@dataclass(frozen=True, slots=True)
class Command:
    """An action or control.  `if` carries its whole chain in `branches`:
    (test, block) for if and each elsif, (None, block) for else."""

    name: str
    line: int
    tags: Mapping[str, Any]
    args: Mapping[str, Any]
    branches: tuple[tuple[Test | None, tuple[Command, ...]], ...] = ()


@dataclass(frozen=True, slots=True)
class Script:
    """One compiled script.  `includes`: (name, global) of every include
    in it (RFC 6609), for the caller to resolve."""

    name: str
    commands: tuple[Command, ...]
    extensions: frozenset[str]
    includes: tuple[tuple[str, bool], ...] = field(default=())


_EMPTY: Mapping[str, Any] = MappingProxyType({})


# --- entry point -----------------------------------------------------------------------

def compile_script(text: bytes | str, *, name: str = "") -> Script:
    """Compile a script or raise SieveScriptError (message, line)."""
    if isinstance(text, str):
        data = text.encode("utf-8", "surrogatepass")
    else:
        data = bytes(text)
    if len(data) > MAX_SCRIPT_SIZE:
        raise SieveScriptError(f"script is larger than {MAX_SCRIPT_SIZE} octets")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        # RFC 5228 §2.2 (and RFC 5804 §2.6: PUTSCRIPT must refuse it).
        raise SieveScriptError("invalid UTF-8", data.count(b"\n", 0, e.start) + 1) from None
    _check_nesting(data)
    parser = Parser()
    parser.lexer = _LineLexer(Parser.lrules)
    if not parser.parse(data):
        line = parser.error_pos[0] if getattr(parser, "error_pos", None) else None
        message = parser.error.split(": ", 1)[1] if parser.error.startswith("line ") else parser.error
        raise SieveScriptError(message, line)
    if parser.lexer.last_token not in (None, "semicolon", "right_cbracket"):
        # sievelib accepts a last command without its ";" (RFC 5228 §8.2:
        # command = identifier arguments (";" / block)); Pigeonhole refuses it.
        raise SieveScriptError("missing semicolon at the end of the script", data.count(b"\n") + 1)
    return _Builder(parser.result, parser.lexer.lines, name).build()


# --- nesting, before any parser --------------------------------------------------------

# One token of the pre-scan: strings and comments are skipped whole so
# their brackets do not count.  Each alternative starts with a distinct
# character or is a plain class run: a match attempt is linear in what it
# consumes, or fails at once.
_SCAN = re.compile(rb'"(?:[^"\\]|\\.)*"|#[^\n]*|/\*.*?\*/|text:|[A-Za-z_][A-Za-z0-9_]*|\n|[^"#/A-Za-z_\n]+|.',
                   re.DOTALL)
_MULTILINE_END = re.compile(rb"\n\.\r?(?:\n|\Z)")


def _check_nesting(data: bytes) -> None:
    """Refuse blocks or tests nested deeper than MAX_NESTING.  One pass;
    an unterminated string or comment ends it (the parser reports it)."""
    line = 1
    blocks = 0
    tests = [0]  # per open parenthesis: how many `not` are chained at that level
    pos, end = 0, len(data)
    while pos < end:
        m = _SCAN.match(data, pos)
        assert m is not None  # the last alternative matches any octet
        token = m.group()
        if token in (b'"', b"/") and (token == b'"' or data.startswith(b"/*", pos)):
            return  # unterminated string or comment: sievelib says where
        if token == b"text:":
            stop = _MULTILINE_END.search(data, m.end())
            nxt = stop.end() if stop else end
            line += data.count(b"\n", pos, nxt)
            pos = nxt
            continue
        pos = m.end()
        first = token[:1]
        if first == b"\n" or first == b'"' or first == b"#" or first == b"/":
            line += token.count(b"\n")
        elif first.isalpha() or first == b"_":
            if token.lower() == b"not":
                tests[-1] += 1
                if len(tests) - 1 + sum(tests) > MAX_NESTING:
                    raise SieveScriptError(f"tests nested deeper than {MAX_NESTING}", line)
        else:
            for byte in token:
                blocks, tests = _bracket(byte, blocks, tests, line)


def _bracket(byte: int, blocks: int, tests: list[int], line: int) -> tuple[int, list[int]]:
    if byte == 0x7b:        # {
        blocks += 1
        tests = [0]
        if blocks > MAX_NESTING:
            raise SieveScriptError(f"blocks nested deeper than {MAX_NESTING}", line)
    elif byte == 0x7d:      # }
        blocks = max(blocks - 1, 0)
        tests = [0]
    elif byte == 0x28:      # (
        tests.append(0)
        if len(tests) - 1 + sum(tests) > MAX_NESTING:
            raise SieveScriptError(f"tests nested deeper than {MAX_NESTING}", line)
    elif byte == 0x29:      # )
        if len(tests) > 1:
            tests.pop()
    elif byte == 0x2c:      # ,
        tests[-1] = 0
    elif byte == 0x3b:      # ;
        tests = [0]
    return blocks, tests


class _LineLexer(Lexer):
    """sievelib's lexer, noting the line of every identifier (each one
    starts a command or test, in the order a tree walk meets them)."""

    def __init__(self, definitions: Any):
        super().__init__(definitions)
        self.lines: list[int] = []
        self.last_token: str | None = None  # the last token that is not a comment

    def scan(self, text: bytes) -> Iterator[tuple[str, bytes]]:
        self.lines = []
        self.last_token = None
        last, line = 0, 1
        for ttype, value in super().scan(text):
            if ttype not in ("hash_comment", "bracket_comment"):
                self.last_token = ttype
            if ttype == "identifier":
                # self.pos is the token's start here; it only moves forward
                # past identifiers, so counting is linear overall.
                if self.pos >= last:
                    line += text.count(b"\n", last, self.pos)
                else:
                    line -= text.count(b"\n", self.pos, last)
                last = self.pos
                self.lines.append(line)
            yield ttype, value


# --- sievelib's tree -> ours ------------------------------------------------------------

class _Builder:
    def __init__(self, result: list[Any], lines: list[int], name: str):
        self.result = result
        self.name = name
        self.extensions: set[str] = set()
        self.includes: list[tuple[str, bool]] = []
        self.lines: dict[int, int] = {}
        walked = [node for command in result for node in command.walk()]
        for node, line in zip(walked, lines, strict=False):
            self.lines[id(node)] = line

    def line(self, node: Any) -> int | None:
        return self.lines.get(id(node))

    def fail(self, node: Any, message: str) -> SieveScriptError:
        return SieveScriptError(message, self.line(node))

    def build(self) -> Script:
        commands = list(self.result)
        # RFC 5228 §3.2: require comes first (Pigeonhole refuses it later).
        at_start = True
        body: list[Any] = []
        for command in commands:
            if command.name == "require":
                if not at_start:
                    raise self.fail(command, "require must come before any other command")
                for ext in _strings(command.arguments["capabilities"]):
                    if ext not in EXTENSIONS and ext not in _IMPLICIT:
                        raise self.fail(command, f"unsupported extension {ext!r}")
                    self.extensions.add(ext)
                continue
            at_start = False
            body.append(command)
        for command in body:
            if command.name == "require":
                raise self.fail(command, "require must come before any other command")
        tree = self.block(body)
        return Script(self.name, tree, frozenset(self.extensions), tuple(dict.fromkeys(self.includes)))

    def block(self, nodes: list[Any]) -> tuple[Command, ...]:
        out: list[Command] = []
        for node in nodes:
            if node.name in ("elsif", "else"):
                if not out or out[-1].name != "if" or out[-1].branches[-1][0] is None:
                    raise self.fail(node, f"{node.name} must follow if or elsif")
                last = out.pop()
                test = self.test(node.arguments["test"]) if node.name == "elsif" else None
                out.append(Command("if", last.line, _EMPTY, _EMPTY,
                                   (*last.branches, (test, self.block(node.children)))))
                continue
            if node.name == "require":
                raise self.fail(node, "require must come before any other command")
            if node.name == "if":
                test = self.test(node.arguments["test"])
                out.append(Command("if", self.line(node) or 0, _EMPTY, _EMPTY,
                                   ((test, self.block(node.children)),)))
                continue
            out.append(self.action(node))
        return tuple(out)

    # -- arguments ------------------------------------------------------------------
    def arguments(self, node: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        tags: dict[str, Any] = {}
        args: dict[str, Any] = {}
        for definition in node.args_definition:
            key = definition["name"]
            if key not in node.arguments:
                continue
            value = node.arguments[key]
            kinds = definition["type"]
            if "tag" in kinds:
                tag = value.lower()[1:]
                extra = node.extra_arguments.get(key)
                if key == "match-type":
                    tags["match"] = tag
                    if extra is not None:
                        tags["relation"] = _unquote(extra).lower()
                elif key == "address-part":
                    tags["part"] = tag
                elif key == "comparator" and extra is not None:
                    tags["comparator"] = _unquote(extra).lower()
                elif key == "body-transform":
                    tags["transform"] = tag
                    if extra is not None:
                        tags["content"] = tuple(self.text(node, s) for s in _raw_strings(extra))
                elif extra is not None:
                    extra_kind = definition.get("extra_arg", {}).get("type")
                    tags[tag] = self.value(node, extra, extra_kind)
                else:
                    tags[tag] = True
            elif kinds in (["test"], ["testlist"]):
                continue
            else:
                args[key] = self.value(node, value, kinds)
        return tags, args

    def value(self, node: Any, value: Any, kinds: Any) -> Any:
        kinds = [kinds] if isinstance(kinds, str) else list(kinds or ())
        if "number" in kinds and isinstance(value, str) and value[:1].isdigit():
            number = _number(value)
            if number > MAX_NUMBER:
                raise self.fail(node, f"number {value} is too large")
            return number
        if "stringlist" in kinds:
            return tuple(self.text(node, s) for s in _raw_strings(value))
        return self.text(node, value)

    def text(self, node: Any, raw: str) -> Text:
        s = _unquote(raw)
        return _template(s, "encoded-character" in self.extensions, "variables" in self.extensions)

    # -- tests ----------------------------------------------------------------------
    def test(self, node: Any, depth: int = 0) -> Test:
        if depth > MAX_NESTING:
            raise self.fail(node, f"tests nested deeper than {MAX_NESTING}")
        line = self.line(node) or 0
        if node.name in ("anyof", "allof"):
            return Test(node.name, line, _EMPTY, _EMPTY,
                        tuple(self.test(t, depth + 1) for t in node.arguments["tests"]))
        if node.name == "not":
            return Test("not", line, _EMPTY, _EMPTY, (self.test(node.arguments["test"], depth + 1),))
        tags, args = self.arguments(node)
        self.check_match(node, tags)
        if node.name == "date" or node.name == "currentdate":
            part = args.get("date-part")
            if isinstance(part, str) and part.lower() not in DATE_PARTS:
                raise self.fail(node, f"unknown date part {part!r}")
            # (A :zone that is not +hhmm is no error: the local zone is
            # used, as Pigeonhole does after a warning.)
        elif node.name == "spamtest" and tags.get("percent") and "spamtestplus" not in self.extensions:
            raise self.fail(node, "spamtest :percent requires \"spamtestplus\"")
        elif node.name == "hasflag" and "variable-list" in args:
            if "variables" not in self.extensions:
                raise self.fail(node, "hasflag names variables only with \"variables\"")
            self.check_variables(node, args["variable-list"])
        elif node.name == "address":
            # RFC 5228 §5.1: only fields that hold addresses (Pigeonhole's list).
            for header in args["header-list"]:
                if isinstance(header, str) and header.lower() not in ADDRESS_FIELDS:
                    raise self.fail(node, f"header {header!r} is not allowed for the address test")
        # (An invalid field name in header/exists is no error: it matches
        # no field, as in Pigeonhole, which only warns.)
        if node.name == "envelope":
            for part in args.get("header-list", ()):
                if isinstance(part, str) and part.lower() not in ("from", "to", "auth"):
                    raise self.fail(node, f"unknown envelope part {part!r}")
        if tags.get("index") == 0:
            raise self.fail(node, ":index counts from 1")  # RFC 5260 §6
        if "last" in tags and "index" not in tags:
            raise self.fail(node, ":last needs :index")
        return Test(node.name, line, MappingProxyType(tags), MappingProxyType(args))

    def check_match(self, node: Any, tags: dict[str, Any]) -> None:
        comparator = tags.get("comparator", "i;ascii-casemap")
        if comparator == "i;ascii-numeric":
            if "comparator-i;ascii-numeric" not in self.extensions:
                raise self.fail(node, "comparator i;ascii-numeric requires \"comparator-i;ascii-numeric\"")
            if tags.get("match") in ("contains", "matches"):
                raise self.fail(node, f"comparator i;ascii-numeric does not support :{tags['match']}")

    def check_variables(self, node: Any, names: Any) -> None:
        for name in names:
            # RFC 5229 §3: a match variable (digits) cannot be assigned.
            if isinstance(name, str) and (not _VARIABLE_REF.match(name) or name.isdigit()):
                raise self.fail(node, f"invalid variable name {name!r}")

    # -- actions --------------------------------------------------------------------
    def action(self, node: Any) -> Command:
        line = self.line(node) or 0
        tags, args = self.arguments(node)
        name = node.name
        if name == "set":
            variable = args["name"]
            # RFC 5229 §4: an identifier; RFC 6609 §3.5 adds "global.name".
            local = variable[7:] if isinstance(variable, str) and variable.lower().startswith("global.") \
                and "include" in self.extensions else variable
            if not isinstance(local, str) or not _IDENTIFIER.match(local):
                raise self.fail(node, f"invalid variable name {_show(variable)!r}")
            modifiers = [m for m in ("lower", "upper", "lowerfirst", "upperfirst", "quotewildcard",
                                     "length") if tags.get(m)]
            tags["modifiers"] = tuple(modifiers)
        elif name == "global":
            if "variables" not in self.extensions:
                raise self.fail(node, "global requires \"variables\"")
            for variable in args["names"]:
                if not isinstance(variable, str) or not _IDENTIFIER.match(variable):
                    raise self.fail(node, f"invalid global variable name {_show(variable)!r}")
        elif name == "include":
            script = args["script"]
            if not isinstance(script, str):
                raise self.fail(node, "include needs a constant script name")
            if "/" in script or not script:
                raise self.fail(node, f"invalid script name {script!r}")
            self.includes.append((script, bool(tags.get("global"))))
        elif name in ("setflag", "addflag", "removeflag"):
            if "variable-name" in args:
                if "variables" not in self.extensions:
                    raise self.fail(node, f"{name} names a variable only with \"variables\"")
                self.check_variables(node, (args["variable-name"],))
        elif name == "vacation":
            for key in ("days", "seconds"):
                if key in tags and not isinstance(tags[key], int):
                    raise self.fail(node, f":{key} needs a number")
            if "days" in tags and "seconds" in tags:
                raise self.fail(node, ":days and :seconds exclude each other")
            from_ = tags.get("from")
            if isinstance(from_, str) and valid_address(from_) is None:
                raise self.fail(node, f"invalid :from address {from_[:200]!r}")  # RFC 5230 §4.4
            # RFC 5230 §4.2: without :handle, replies differ when reason,
            # subject, from or mime differ.  Pigeonhole's form of that
            # handle, from the strings as written (variables unexpanded).
            raw = {key: _unquote(node.extra_arguments[key]) for key in ("subject", "from")
                   if key in node.extra_arguments}
            tags["default-handle"] = (_unquote(node.arguments["reason"])
                                      + raw.get("subject", "<default-subject>")
                                      + raw.get("from", "<default-from>")
                                      + ("<MIME>" if tags.get("mime") else "<NO-MIME>"))
        elif name == "redirect":
            address = args["address"]
            if isinstance(address, str) and valid_address(address) is None:
                raise self.fail(node, f"invalid redirect address {address[:200]!r}")
        elif name == "notify":
            raise self.fail(node, "notify is not supported")
        return Command(name, line, MappingProxyType(tags), MappingProxyType(args))


# --- strings ---------------------------------------------------------------------------

def _raw_strings(value: Any) -> list[str]:
    return value if isinstance(value, list) else [value]


def _strings(value: Any) -> list[str]:
    return [_unquote(s) for s in _raw_strings(value)]


_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


def _unquote(raw: str) -> str:
    """A quoted string or a multi-line string (RFC 5228 §2.4.2) as text."""
    if raw.startswith('"'):
        # "\" followed by any character is that character (§2.4.2).
        return _ESCAPE.sub(r"\1", raw[1:-1])
    if raw[:5].lower() == "text:":
        # text: [spaces] [hash comment] CRLF, lines, "." CRLF; a line
        # starting with "." had it doubled ("dot-stuffing", §2.4.2).
        # Lines end in CRLF whatever the script used (as in Pigeonhole).
        start = raw.find("\n") + 1
        stop = raw.rfind("\n")
        lines = [line.removesuffix("\r") for line in raw[start:stop].split("\n")] if stop >= start else []
        return "".join((line[1:] if line.startswith("..") else line) + "\r\n" for line in lines)
    return raw


def _number(value: str) -> int:
    """RFC 5228 §2.4.1: a number with an optional K, M or G quantifier."""
    scale = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(value[-1:].lower(), 1)
    digits = value[:-1] if scale != 1 else value
    return int(digits) * scale


def _template(s: str, encoded: bool, variables: bool) -> Text:
    """Decode encoded characters and split out variable references, in one
    left-to-right pass (what one decodes is not looked at again)."""
    if "${" not in s or not (encoded or variables):
        return s
    parts: list[str | Var] = []
    literal: list[str] = []
    i = 0
    while True:
        j = s.find("${", i)
        if j < 0:
            literal.append(s[i:])
            break
        literal.append(s[i:j])
        close = s.find("}", j + 2, j + 2 + MAX_REFERENCE_CHARS)
        if close < 0:
            literal.append("${")
            i = j + 2
            continue
        inner = s[j + 2:close]
        decoded = _encoded_character(inner) if encoded else None
        if decoded is not None:
            literal.append(decoded)
        elif variables and _VARIABLE_REF.match(inner):
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(Var(inner.lower() if not inner.isdigit() else str(int(inner))))
        else:
            # Not a reference: kept as written (RFC 5229 §3), and the "}"
            # may still close a later "${".
            literal.append("${")
            i = j + 2
            continue
        i = close + 1
    if literal:
        parts.append("".join(literal))
    parts = [p for p in parts if p != ""]
    if all(isinstance(p, str) for p in parts):
        return "".join(p for p in parts if isinstance(p, str))
    return tuple(parts)


def _encoded_character(inner: str) -> str | None:
    """RFC 5228 §2.4.2.4: "${hex:" hex-pairs "}" and "${unicode:" hex "}";
    anything malformed stays as written (None)."""
    kind, colon, rest = inner.partition(":")
    if not colon:
        return None
    kind = kind.lower()
    if kind == "hex" and _HEX_PAIRS.match(rest):
        octets = bytes(int(pair, 16) for pair in rest.split())
        return octets.decode("utf-8", "replace")
    if kind == "unicode" and _UNICODE_HEX.match(rest):
        out = []
        for number in rest.split():
            code = int(number, 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                return None
            out.append(chr(code))
        return "".join(out)
    return None


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "".join(f"${{{p.name}}}" if isinstance(p, Var) else p for p in value)
    return str(value)


def valid_address(text: str) -> str | None:
    """The address of a redirect (RFC 5228 §4.2) or a vacation :from: an
    addr-spec, maybe in angle brackets after a display name (as Pigeonhole
    takes it); None if it is not one."""
    text = text.strip()
    if text.endswith(">") and "<" in text:
        text = text[text.rindex("<") + 1:-1].strip()
    if len(text) > 998 or not _ADDR_SPEC.match(text):
        return None
    return text

