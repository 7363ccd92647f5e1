# -*- test-case-name: tests.autoconfig.test_autodiscover -*-
"""Serializing the XML documents, and reading untrusted XML safely."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from xml.parsers import expat


class XMLRequestError(ValueError):
    """A request body that is not acceptable XML."""


def serialize(root: ET.Element) -> bytes:
    """UTF-8 bytes with a declaration; ElementTree escapes text and
    attribute values, so no value can add markup."""
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body.encode("utf-8") + b"\n"


def text_by_local_name(data: bytes, wanted: frozenset[str], max_depth: int = 16) -> dict[str, str]:
    """The text of the first element with each wanted local name
    (namespaces ignored), from an untrusted document.

    A DOCTYPE is refused outright: no entity may expand (billion laughs)
    or reach outside (XXE), and no request needs one.
    """
    found: dict[str, str] = {}
    stack: list[tuple[str, list[str]]] = []

    def start(name: str, attrs: object) -> None:
        if len(stack) >= max_depth:
            raise XMLRequestError("XML nested too deeply")
        stack.append((name.rpartition("}")[2], []))

    def end(name: str) -> None:
        local, chunks = stack.pop()
        if local in wanted and local not in found:
            found[local] = "".join(chunks).strip()

    def text(data: str) -> None:
        if stack:
            stack[-1][1].append(data)

    def doctype(*args: object) -> None:
        raise XMLRequestError("DOCTYPE not allowed")

    parser = expat.ParserCreate(namespace_separator="}")
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = doctype
    try:
        parser.Parse(data, True)
    except expat.ExpatError as e:
        raise XMLRequestError(f"not well-formed XML: {expat.errors.messages.get(e.code, e)}") from None
    return found
