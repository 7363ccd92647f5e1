# -*- test-case-name: tests.protocols.test_imap_fetch_model -*-
"""FETCH data from cached parse results: pure functions, no Twisted, no I/O
except reading the byte ranges a caller hands a file object for.

Everything here takes `structure`, the `MessageMeta.structure` dict built by
`xmail.message.parse_message` at delivery (layout in that module's
docstring).  Nothing re-parses the message file except `structure_of`, for
a message whose cache is missing.

Rendering — each returns the wire bytes of one FETCH data item's *value*;
the caller writes the item name and a space before it::

    render_envelope(structure) -> bytes            # ENVELOPE  (RFC 3501 §7.4.2)
    render_body(structure, extended=True) -> bytes # BODYSTRUCTURE (extended=True)
                                                   # or BODY (extended=False)
    nstring(value: str | bytes | None) -> bytes    # NIL / "quoted" / {n}\\r\\n literal

    b"* 3 FETCH (UID 7 ENVELOPE " + render_envelope(meta.structure) + b")"

Strings that are 7-bit, free of CR/LF/NUL and short are quoted (with `\\"`
and `\\\\` escapes); anything else goes out as a synchronizing literal
`{n}\\r\\n<bytes>` (8-bit header text is sent UTF-8 encoded).

Body sections — BODY[section]<partial>, BODY.PEEK[...], RFC822,
RFC822.HEADER, RFC822.TEXT (RFC 3501 §6.4.5)::

    selection = select_body(att, structure)   # att: model.FetchAtt
    # -> FileRange | HeaderSelection | None  (None: no such part -> send NIL)

    FileRange(start, end)       half-open byte range [start, end) of the message
                                file, partial already applied; its length is
                                known without reading (`end - start`), so the
                                server can write "{n}\\r\\n" and then STREAM the
                                bytes with `iter_selection(selection, file)`.
    HeaderSelection(start, end, fields, exclude, partial)
                                HEADER.FIELDS / HEADER.FIELDS.NOT: the header
                                block [start, end) must be read and filtered;
                                it is small, so `read_selection(selection,
                                file) -> bytes` (partial applied) and the
                                length is len() of that.

    read_selection(selection, file) -> bytes           # whole result in memory
    iter_selection(selection, file, chunk_size=65536)  # -> Iterator[bytes]
    # file: a binary file object (IFolder.open_message(uid)); both seek.

    sets_seen(att) -> bool   # BODY[...] (not PEEK), RFC822 and RFC822.TEXT set
                             # \\Seen (RFC 3501 §6.4.5); RFC822.HEADER does not

The response item name is `att.response_name()` (model.py); for RFC822,
RFC822.HEADER and RFC822.TEXT that is the name itself, as RFC 3501 §7.4.2
answers them.  A HEADER.FIELDS selection reads the whole header block,
however long; everything else is bounded by what the client asked for.

Lower-level: `resolve_section(structure, section) -> FileRange |
HeaderSelection | None` (no partial), `apply_partial(selection, partial)`.

Missing cache: `structure_of(meta, read_message) -> structure` returns
meta.structure when it is present and of the current layout version, else
parses the bytes `read_message()` returns (a message stored before the
parser existed, or after a layout change).  Call it off the reactor when it
may read a big file.

Part numbering (RFC 3501 §6.4.5): parts of a multipart are 1..n; a
non-multipart message has only part 1, which is its body; a part that is a
message/rfc822 has the parts of the encapsulated message as its sub-parts
(so 2.1 is the encapsulated message's body when that is not multipart).
HEADER, HEADER.FIELDS(.NOT) and TEXT after a part number need that part to
be a message/rfc822; MIME needs a part number and gives that part's own MIME
header.  Every header result includes the blank line ending it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from xmail.message import STRUCTURE_VERSION, parse_message
from xmail.protocols.imap.model import FetchAtt, Section
from xmail.store.interfaces import MessageMeta

__all__ = [
    "FileRange", "HeaderSelection", "Selection", "apply_partial", "filter_header", "iter_selection",
    "nstring", "read_selection", "render_body", "render_envelope", "resolve_section",
    "select_body", "sets_seen", "structure_of",
]

_QUOTE_MAX = 1000  # longer strings go as literals, which clients handle better


@dataclass(frozen=True, slots=True)
class FileRange:
    """Bytes [start, end) of the message file."""

    start: int
    end: int

    def __len__(self) -> int:
        return max(0, self.end - self.start)


@dataclass(frozen=True, slots=True)
class HeaderSelection:
    """The header block [start, end) (blank line included) filtered to the
    fields named (upper-case) or, with exclude, to all others; then partial."""

    start: int
    end: int
    fields: frozenset[str]
    exclude: bool
    partial: tuple[int, int] | None = None


Selection = FileRange | HeaderSelection


def structure_of(meta: MessageMeta, read_message: Callable[[], bytes]) -> dict[str, Any]:
    """The cached structure, or a fresh parse when it is missing or stale."""
    structure = meta.structure
    if structure and structure.get("v") == STRUCTURE_VERSION and "body" in structure:
        return structure
    return parse_message(read_message()).structure


# --- strings ------------------------------------------------------------------------


def nstring(value: str | bytes | None) -> bytes:
    """NIL, a quoted string or a literal (RFC 3501 §4.3, §4.5)."""
    if value is None:
        return b"NIL"
    raw = value.encode("utf-8") if isinstance(value, str) else value
    if b"\x00" in raw:
        raw = raw.replace(b"\x00", b"")  # NUL is not a CHAR8 (RFC 3501 §9)
    if len(raw) <= _QUOTE_MAX and raw.isascii() and b"\r" not in raw and b"\n" not in raw:
        return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(raw) + raw


def _upper(value: str) -> bytes:
    return nstring(value.upper())


# --- ENVELOPE -------------------------------------------------------------------------


def _addresses(addresses: list[list[str | None]] | None) -> bytes:
    if not addresses:
        return b"NIL"
    return b"(" + b"".join(
        b"(" + b" ".join(nstring(item) for item in address) + b")" for address in addresses
    ) + b")"


def render_envelope(structure: dict[str, Any]) -> bytes:
    """ENVELOPE of the message whose structure (or encapsulated "msg") this is."""
    env = structure.get("env") or {}
    sender_from = env.get("from")
    return b"(" + b" ".join((
        nstring(env.get("date")),
        nstring(env.get("subject")),
        _addresses(sender_from),
        # RFC 3501 §7.4.2: absent or empty Sender / Reply-To take From's value.
        _addresses(env.get("sender") or sender_from),
        _addresses(env.get("reply-to") or sender_from),
        _addresses(env.get("to")),
        _addresses(env.get("cc")),
        _addresses(env.get("bcc")),
        nstring(env.get("in-reply-to")),
        nstring(env.get("message-id")),
    )) + b")"


# --- BODY / BODYSTRUCTURE ---------------------------------------------------------------


def _params(params: list[list[str]] | None) -> bytes:
    # body-fld-param = "(" string SP string *(SP string SP string) ")" / nil
    if not params:
        return b"NIL"
    return b"(" + b" ".join(_upper(name) + b" " + nstring(value) for name, value in params) + b")"


def _disposition(disp: list[Any] | None) -> bytes:
    # body-fld-dsp = "(" string SP body-fld-param ")" / nil
    if not disp:
        return b"NIL"
    return b"(" + _upper(disp[0]) + b" " + _params(disp[1]) + b")"


def _language(lang: list[str] | None) -> bytes:
    # body-fld-lang = nstring / "(" string *(SP string) ")"
    if not lang:
        return b"NIL"
    if len(lang) == 1:
        return nstring(lang[0])
    return b"(" + b" ".join(nstring(tag) for tag in lang) + b")"


def _part(part: dict[str, Any], extended: bool) -> bytes:
    ptype = part.get("type", "text")
    subtype = part.get("subtype", "plain")
    if ptype == "multipart" and part.get("parts"):
        # body-type-mpart = 1*body SP media-subtype [SP body-ext-mpart]
        out = b"".join(_part(child, extended) for child in part["parts"]) + b" " + _upper(subtype)
        if extended:
            out += b" " + b" ".join((_params(part.get("params")), _disposition(part.get("disp")),
                                     _language(part.get("lang")), nstring(part.get("loc"))))
        return b"(" + out + b")"
    message = part.get("msg")
    # Neither is produced by parse.py; keep the grammar valid anyway.
    if ptype == "multipart":
        ptype, subtype = "text", "plain"
    elif ptype == "message" and subtype == "rfc822" and message is None:
        ptype, subtype = "application", "octet-stream"
    # body-fields = body-fld-param SP body-fld-id SP body-fld-desc SP body-fld-enc SP body-fld-octets
    fields = [_upper(ptype), _upper(subtype), _params(part.get("params")), nstring(part.get("id")),
              nstring(part.get("desc")), _upper(part.get("enc") or "7bit"), b"%d" % part.get("size", 0)]
    if ptype == "message" and subtype == "rfc822" and message is not None:
        # body-type-msg = media-message SP body-fields SP envelope SP body SP body-fld-lines
        fields += [render_envelope(message), _part(message["body"], extended),
                   b"%d" % part.get("lines", 0)]
    elif ptype == "text":
        # body-type-text = media-text SP body-fields SP body-fld-lines
        fields.append(b"%d" % part.get("lines", 0))
    if extended:
        # body-ext-1part = body-fld-md5 [SP body-fld-dsp [SP body-fld-lang [SP body-fld-loc]]]
        fields += [nstring(part.get("md5")), _disposition(part.get("disp")),
                   _language(part.get("lang")), nstring(part.get("loc"))]
    return b"(" + b" ".join(fields) + b")"


def render_body(structure: dict[str, Any], extended: bool = True) -> bytes:
    """BODYSTRUCTURE (extended=True) or BODY (extended=False) of a message."""
    return _part(structure["body"], extended)


# --- sections -----------------------------------------------------------------------------


def _is_message(part: dict[str, Any]) -> bool:
    return part.get("type") == "message" and part.get("subtype") == "rfc822" and "msg" in part


def resolve_section(structure: dict[str, Any], section: Section | None) -> Selection | None:
    """Where BODY[section] lies (RFC 3501 §6.4.5); None when there is no such part."""
    body = structure["body"]
    if section is None or (not section.part and not section.text):
        return FileRange(body["hs"], body["be"])  # BODY[]: the whole message
    node = body
    at_message = True  # node is the top-level part of a message, not a sub-part
    for number in section.part:
        if not at_message:
            if _is_message(node):
                node = node["msg"]["body"]
                at_message = True
            elif not node.get("parts"):
                return None  # a leaf part has no sub-parts
        children = node.get("parts")
        if children:
            if not 1 <= number <= len(children):
                return None
            node = children[number - 1]
        elif number != 1:
            return None  # a non-multipart message has only part 1: its body
        at_message = False
    text = section.text
    if not text:
        return FileRange(node["bs"], node["be"])
    if text == "MIME":
        if not section.part:
            return None
        return FileRange(node["hs"], node["bs"])
    if section.part:
        if not _is_message(node):
            return None  # HEADER/TEXT only of a message/rfc822 part
        node = node["msg"]["body"]
    if text == "HEADER":
        return FileRange(node["hs"], node["bs"])
    if text == "TEXT":
        return FileRange(node["bs"], node["be"])
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        return HeaderSelection(node["hs"], node["bs"], frozenset(f.upper() for f in section.fields),
                               text == "HEADER.FIELDS.NOT")
    return None


def apply_partial(selection: Selection, partial: tuple[int, int] | None) -> Selection:
    """BODY[...]<origin.count>: origin past the end gives an empty string
    (RFC 3501 §6.4.5)."""
    if partial is None:
        return selection
    if isinstance(selection, HeaderSelection):
        return HeaderSelection(selection.start, selection.end, selection.fields, selection.exclude,
                               partial)
    origin, count = partial
    start = min(selection.start + origin, selection.end)
    return FileRange(start, min(start + count, selection.end))


_RFC822_SECTIONS = {
    "RFC822": Section(),
    "RFC822.HEADER": Section(text="HEADER"),
    "RFC822.TEXT": Section(text="TEXT"),
}


def select_body(att: FetchAtt, structure: dict[str, Any]) -> Selection | None:
    """Selection for BODY[...]/BODY.PEEK[...] (partial applied), RFC822,
    RFC822.HEADER or RFC822.TEXT; None -> NIL."""
    if att.name in _RFC822_SECTIONS:
        return resolve_section(structure, _RFC822_SECTIONS[att.name])
    if att.name != "BODY[]":
        raise ValueError(f"not a body section attribute: {att.name}")
    selection = resolve_section(structure, att.section)
    if selection is None:
        return None
    return apply_partial(selection, att.partial)


def sets_seen(att: FetchAtt) -> bool:
    """Whether fetching att sets \\Seen (RFC 3501 §6.4.5)."""
    if att.name == "BODY[]":
        return not att.peek
    return att.name in ("RFC822", "RFC822.TEXT")


# --- reading ---------------------------------------------------------------------------------


def filter_header(block: bytes, fields: frozenset[str], exclude: bool) -> bytes:
    """The fields of a header block named in fields (or, with exclude, the
    others), folded lines kept whole, in their order, then the blank line."""
    out: list[bytes] = []
    keep = False
    for line in block.splitlines(keepends=True):
        if line in (b"\r\n", b"\n"):
            break  # the blank line ending the header
        if line[:1] in (b" ", b"\t"):
            if keep:
                out.append(line)
            continue
        colon = line.find(b":")
        name = line[:colon].rstrip(b" \t").decode("latin-1").upper() if colon > 0 else None
        keep = (name in fields) != exclude if name is not None else exclude
        if keep:
            out.append(line if line.endswith(b"\n") else line + b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def _read(file: BinaryIO, start: int, length: int) -> bytes:
    file.seek(start)
    data = file.read(length)
    return data if data is not None else b""


def read_selection(selection: Selection, file: BinaryIO) -> bytes:
    """The bytes of a selection (filtered and partial applied)."""
    if isinstance(selection, FileRange):
        return _read(file, selection.start, len(selection))
    data = filter_header(_read(file, selection.start, selection.end - selection.start),
                         selection.fields, selection.exclude)
    if selection.partial is not None:
        origin, count = selection.partial
        data = data[origin:origin + count]
    return data


def iter_selection(selection: Selection, file: BinaryIO, chunk_size: int = 65536) -> Iterator[bytes]:
    """The bytes of a selection in chunks of at most chunk_size, for streaming
    with back-pressure.  A file shorter than the range (truncated under us)
    ends the iteration early; the caller must then drop the connection, as
    the literal length was already sent."""
    if isinstance(selection, HeaderSelection):
        yield read_selection(selection, file)
        return
    position, end = selection.start, selection.end
    file.seek(position)
    while position < end:
        chunk = file.read(min(chunk_size, end - position))
        if not chunk:
            return
        position += len(chunk)
        yield chunk
