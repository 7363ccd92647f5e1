"""TOML config: DESIGN.md's keys and defaults; errors name the key and file."""

from __future__ import annotations

import json

import pytest

from xmail.config import ConfigError, Settings, load, parse

DESIGN_EXAMPLE = """
[server]
hostname = "mail.example.com"
data_dir = "/var/lib/xmail"
workers = 2

[tls]
cert = "/etc/xmail/cert.pem"
key  = "/etc/xmail/key.pem"
[[tls.sni]]
name = "mail.other.com"
cert = "/etc/xmail/other.pem"
key = "/etc/xmail/other.key"

[listen]
smtp        = ["tcp:25"]
submission  = ["tcp:587"]
submissions = ["tcp:465"]
pop3        = ["tcp:110"]
pop3s       = ["tcp:995"]
imap        = ["tcp:143"]
imaps       = ["tcp:993"]
http        = ["tcp:8080", "systemd:domain=INET:index=0"]

[limits]
max_message_size = 41943040
daily_send_limit = 1000
recycle_days = 5
quota_bytes = 0
quota_messages = 50000
"""


def test_the_design_example_parses_into_typed_settings():
    settings = parse(DESIGN_EXAMPLE, "xmail.toml")
    assert settings.source == "xmail.toml"
    assert settings.server.hostname == "mail.example.com"
    assert settings.server.workers == 2
    assert settings.data_dir == "/var/lib/xmail"
    assert settings.path("index") == "/var/lib/xmail/index"
    assert settings.tls.cert == "/etc/xmail/cert.pem"
    assert settings.tls.sni[0].name == "mail.other.com" and settings.tls.sni[0].key == "/etc/xmail/other.key"
    assert settings.listen.smtp == ("tcp:25",)
    assert settings.listen.http == ("tcp:8080", "systemd:domain=INET:index=0")
    assert settings.limits.max_message_size == 41943040
    assert settings.limits.quota_messages == 50000


def test_the_embedded_default():
    for settings in (Settings(), load(None), parse("", "empty.toml")):
        assert settings.data_dir == "xmail-data"
        assert settings.tls.cert == ""
        ports = {name: getattr(settings.listen, name) for name in
                 ("smtp", "submission", "submissions", "pop3", "pop3s", "imap", "imaps", "http")}
        assert ports == {
            "smtp": ("tcp:2525:interface=127.0.0.1",),
            "submission": ("tcp:2587:interface=127.0.0.1",),
            "submissions": ("tcp:2465:interface=127.0.0.1",),
            "pop3": ("tcp:2110:interface=127.0.0.1",),
            "pop3s": ("tcp:2995:interface=127.0.0.1",),
            "imap": ("tcp:2143:interface=127.0.0.1",),
            "imaps": ("tcp:2993:interface=127.0.0.1",),
            "http": ("tcp:8080:interface=127.0.0.1",),
        }
        assert settings.limits.recycle_days == 5
        assert settings.limits.quota_bytes == 0


def test_a_single_endpoint_string_is_a_list_of_one():
    assert parse('[listen]\nimap = "tcp:1143"\n').listen.imap == ("tcp:1143",)


def test_an_empty_list_switches_a_listener_off():
    assert parse("[listen]\nhttp = []\n").listen.http == ()


@pytest.mark.parametrize("text, key", [
    ("colour = 1\n", "'colour'"),
    ("[server]\nhostnme = 'x'\n", "'server.hostnme'"),
    ("[limits]\nquota = 5\n", "'limits.quota'"),
    ("[listen]\nftp = ['tcp:21']\n", "'listen.ftp'"),
    ("[[tls.sni]]\nname = 'a'\ncert = 'b'\nkey = 'c'\nchain = 'd'\n", "'tls.sni[0].chain'"),
    ("[server.extra]\nx = 1\n", "'server.extra'"),
])
def test_unknown_keys_are_errors_naming_key_and_file(text, key):
    with pytest.raises(ConfigError) as info:
        parse(text, "/etc/xmail/xmail.toml")
    message = str(info.value)
    assert message.startswith("/etc/xmail/xmail.toml: ")
    assert "unknown key" in message and key in message


@pytest.mark.parametrize("text, key", [
    ("[server]\nworkers = 'two'\n", "server.workers"),
    ("[server]\nworkers = true\n", "server.workers"),
    ("[server]\nworkers = 1.5\n", "server.workers"),
    ("[server]\nloopback_plaintext_auth = 1\n", "server.loopback_plaintext_auth"),
    ("[server]\nhostname = 42\n", "server.hostname"),
    ("[limits]\nmax_message_size = '40M'\n", "limits.max_message_size"),
    ("[limits]\nrecycle_days = -1\n", "limits.recycle_days"),
    ("[listen]\nsmtp = [25]\n", "listen.smtp[0]"),
    ("[listen]\nsmtp = {port = 25}\n", "listen.smtp"),
    ("server = 'x'\n", "server"),
    ("[tls]\nsni = 'x'\n", "tls.sni"),
    ("[transport]\n'example.com' = 25\n", "transport.example.com"),
])
def test_wrong_types_are_errors_naming_key_and_file(text, key):
    with pytest.raises(ConfigError) as info:
        parse(text, "site.toml")
    message = str(info.value)
    assert message.startswith("site.toml: ")
    assert key in message


@pytest.mark.parametrize("hostname", ["", " ", "mail example.com", "mail\r\n.example.com", "a/b"])
def test_a_bad_hostname_is_refused(hostname):
    with pytest.raises(ConfigError, match="server.hostname"):
        parse(f"[server]\nhostname = {json.dumps(hostname)}\n", "h.toml")


def test_syntax_errors_name_the_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[server\nhostname = 'x'\n")
    with pytest.raises(ConfigError) as info:
        load(str(path))
    assert str(info.value).startswith(f"{path}: ")


def test_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load(str(tmp_path / "missing.toml"))
    path = tmp_path / "latin1.toml"
    path.write_bytes(b"[server]\nhostname = 'm\xe9l'\n")
    with pytest.raises(ConfigError, match="not UTF-8") as info:
        load(str(path))
    assert str(path) in str(info.value)


def test_load_reads_a_file(tmp_path):
    path = tmp_path / "xmail.toml"
    path.write_text('[server]\nhostname = "mx.example.org"\ndata_dir = "/srv/mail"\n'
                    '[transport]\n"Example.NET" = "127.0.0.1:2525"\n')
    settings = load(str(path))
    assert settings.source == str(path)
    assert settings.server.hostname == "mx.example.org"
    assert settings.data_dir == "/srv/mail"
    assert settings.transport == {"example.net": "127.0.0.1:2525"}
