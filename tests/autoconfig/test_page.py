"""The setup page as HTML text (the browser test is in tests/protocols)."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from xmail.autoconfig.model import ClientSettings, parse_address
from xmail.autoconfig.page import TEXT, negotiate_language, render_page


class Collector(HTMLParser):
    """Elements by id, and all text; fails on tags it does not expect."""

    ALLOWED = {"html", "head", "meta", "title", "style", "body", "main", "nav", "a", "h1", "h2", "p", "form",
               "input", "button", "div", "table", "tr", "th", "td", "b", "span", "br", "small"}

    def __init__(self) -> None:
        super().__init__()
        self.ids: dict[str, dict[str, str | None]] = {}
        self.text: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        assert tag in self.ALLOWED, tag
        self.tags.append(tag)
        values = dict(attrs)
        if values.get("id"):
            self.ids[values["id"]] = values

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parsed(html: bytes) -> Collector:
    collector = Collector()
    collector.feed(html.decode("utf-8"))
    return collector


@pytest.mark.parametrize("header, override, expected", [
    (None, None, "en"),
    ("", None, "en"),
    ("zh-CN,zh;q=0.9,en;q=0.8", None, "zh"),
    ("en-US,en;q=0.9,zh-CN;q=0.8", None, "en"),
    ("zh-TW", None, "zh"),
    ("fr-FR, de;q=0.9", None, "en"),
    ("fr-FR, zh;q=0.5, en;q=0.4", None, "zh"),
    ("en;q=0.1, zh;q=0.2", None, "zh"),
    ("zh;q=0, en;q=0.5", None, "en"),
    ("zh, en", None, "zh"),
    ("en, zh", None, "en"),
    ("zh;q=bogus, en;q=0.1", None, "en"),
    ("zh-CN", "en", "en"),
    ("en", "zh", "zh"),
    ("en", "xx", "en"),
])
def test_negotiate_language(header: str | None, override: str | None, expected: str) -> None:
    assert negotiate_language(header, override) == expected


def test_languages_have_the_same_keys() -> None:
    assert TEXT["en"].keys() == TEXT["zh"].keys()


@pytest.mark.parametrize("language", ["en", "zh"])
def test_page_with_address(language: str, servers: ClientSettings) -> None:
    html = render_page(language, servers, address=parse_address("alice@example.com"))
    page = parsed(html)
    text = "".join(page.text)
    assert f'<html lang="{TEXT[language]["html_lang"]}">' in html.decode()
    assert 'name="viewport" content="width=device-width, initial-scale=1"' in html.decode()
    assert page.ids["profile"]["href"] == "/mobileconfig?email=alice@example.com"
    assert page.ids["email"]["value"] == "alice@example.com"
    assert TEXT[language]["title"] in text and TEXT[language]["download"] in text
    assert "alice@example.com" in "".join(page.text)
    assert page.tags.count("tr") == 1 + len(servers.servers)
    for server in servers.servers:
        assert f'data-listener="{server.listener}"' in html.decode()
        assert f'<td class="nowrap">{server.port}</td>' in html.decode()


def test_page_without_address_has_no_profile_link(servers: ClientSettings) -> None:
    page = parsed(render_page("en", servers))
    assert "profile" not in page.ids and "error" not in page.ids
    assert "your full email address" in "".join(page.text)


@pytest.mark.parametrize("typed", [
    '"><script>alert(1)</script>', "a@b.com' onfocus='x", "</title><b>x", "a&amp;b",
])
def test_typed_text_is_escaped(typed: str, servers: ClientSettings) -> None:
    html = render_page("en", servers, typed=typed, error="invalid")
    page = parsed(html)
    assert "script" not in page.tags
    assert page.ids["email"]["value"] == typed  # round-trips as an attribute value only
    assert page.ids["error"] is not None


def test_not_hosted_message_names_the_domain(servers: ClientSettings) -> None:
    page = parsed(render_page("zh", servers, typed="a@other.org", error="not_hosted", domain="other.org"))
    assert "本服务器不托管 other.org 的邮件。" in "".join(page.text)
