# -*- test-case-name: tests.autoconfig.test_page,tests.autoconfig.test_managesieve -*-
"""The setup page at GET /: type an address, get the iPhone profile, the
Outlook steps and the settings table.  English and Chinese, no script,
one column that fits a phone screen."""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from xmail.autoconfig.model import SIEVE, SMTP, SSL, Address, ClientSettings, ServerEndpoint

LANGUAGES = ("en", "zh")

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "html_lang": "en",
        "title": "Set up your mail",
        "intro": "Enter your email address to get the settings for your phone or computer.",
        "address": "Email address",
        "continue": "Continue",
        "invalid": "This is not a valid email address.",
        "not_hosted": "This server does not host mail for {domain}.",
        "for_address": "Settings for {address}",
        "apple": "iPhone, iPad and Mac",
        "apple_steps": "Open this page in Safari and tap the button. Then open Settings, tap"
                       " \u201cProfile Downloaded\u201d, tap Install and enter your mail password.",
        "download": "Download the profile",
        "outlook": "Outlook",
        "outlook_steps": "File \u2192 Add Account, enter {address} and choose Connect, then enter your"
                         " password. Outlook finds the servers by itself; if it asks, choose IMAP and"
                         " use the table below.",
        "other": "Thunderbird and other apps",
        "other_steps": "Add an account with your address and password: the settings are found"
                       " automatically. To enter them by hand, use this table.",
        "settings": "Server settings",
        "kind": "Type",
        "server": "Server",
        "port": "Port",
        "security": "Security",
        "incoming": "Incoming",
        "outgoing": "Outgoing",
        "ssl": "SSL/TLS",
        "starttls": "STARTTLS",
        "username": "Username",
        "your_address": "your full email address",
        "password": "Password",
        "your_password": "your mail password (normal password)",
        "language": "中文",
        "filters": "Filter rules",
        "filters_steps": "Rules that sort, forward or answer your mail (Sieve) can be edited in apps"
                         " that speak ManageSieve, such as Roundcube or Thunderbird's Sieve add-on:"
                         " use the ManageSieve row of the table.",
    },
    "zh": {
        "html_lang": "zh-CN",
        "title": "设置邮箱",
        "intro": "输入您的邮箱地址，获取手机或电脑的设置。",
        "address": "邮箱地址",
        "continue": "继续",
        "invalid": "这不是有效的邮箱地址。",
        "not_hosted": "本服务器不托管 {domain} 的邮件。",
        "for_address": "{address} 的设置",
        "apple": "iPhone、iPad 和 Mac",
        "apple_steps": "在 Safari 中打开本页并点按下面的按钮。"
                       "然后打开“设置”，点按“已下载描述文件”，点按“安装”并输入邮箱密码。",
        "download": "下载描述文件",
        "outlook": "Outlook",
        "outlook_steps": "文件 → 添加帐户，输入 {address} 并选择“连接”，然后输入密码。"
                         "Outlook 会自动找到服务器；如果它询问，请选择 IMAP 并使用下表。",
        "other": "Thunderbird 和其他应用",
        "other_steps": "用邮箱地址和密码添加帐户，设置会自动填写。如需手动填写，请使用此表。",
        "settings": "服务器设置",
        "kind": "类型",
        "server": "服务器",
        "port": "端口",
        "security": "加密",
        "incoming": "收件",
        "outgoing": "发件",
        "ssl": "SSL/TLS",
        "starttls": "STARTTLS",
        "username": "用户名",
        "your_address": "您的完整邮箱地址",
        "password": "密码",
        "your_password": "您的邮箱密码（普通密码）",
        "language": "English",
        "filters": "过滤规则",
        "filters_steps": "整理、转发或自动回复邮件的规则（Sieve）可在支持 ManageSieve 的应用中编辑，"
                         "例如 Roundcube 或 Thunderbird 的 Sieve 扩展：请使用下表中的 ManageSieve 一行。",
    },
}


def negotiate_language(accept_language: str | None, override: str | None = None) -> str:
    """"en" or "zh": ?lang= first, then the best Accept-Language range
    (RFC 9110 §12.5.4, q-values; a range's primary subtag decides)."""
    if override in LANGUAGES:
        return override  # type: ignore[return-value]
    best, best_q = "en", 0.0
    for item in (accept_language or "").split(",")[:32]:
        tag, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        primary = tag.strip().lower().split("-")[0]
        # Strictly greater: the earlier of two equal ranges wins, so
        # "zh, en" and "en, zh" differ.
        if primary in LANGUAGES and q > best_q:
            best, best_q = primary, q
    return best


_STYLE = """
body{font:16px/1.5 system-ui,-apple-system,"Segoe UI","PingFang SC","Microsoft YaHei","Noto Sans CJK SC",
"WenQuanYi Micro Hei",sans-serif;
margin:0;padding:16px;background:#f5f6f8;color:#1d1f23}
main{max-width:40rem;margin:0 auto}
h1{font-size:1.5rem;margin:.5rem 0}h2{font-size:1.15rem;margin:1.5rem 0 .5rem}
form{display:flex;flex-wrap:wrap;gap:8px}
input{flex:1 1 14rem;min-width:0;font-size:1rem;padding:10px;border:1px solid #9aa0a6;border-radius:6px}
button,.button{font-size:1rem;padding:10px 18px;border:0;border-radius:6px;background:#1a73e8;color:#fff;
text-decoration:none;display:inline-block}
.error{color:#b00020}
.table{overflow-x:auto}table{border-collapse:collapse;width:100%}
table{font-size:.9rem}th,td{text-align:left;padding:6px 4px;border-bottom:1px solid #d0d4d9}
td.server{overflow-wrap:anywhere}td.nowrap{white-space:nowrap}small{color:#5f6368}
nav{text-align:right}
"""


def render_page(language: str, settings: ClientSettings, *, address: Address | None = None,
                typed: str = "", error: str | None = None, domain: str | None = None) -> bytes:
    """The page in `language`; `typed` is what the user entered (echoed
    escaped into the form), `error` a key of TEXT ("invalid", "not_hosted")."""
    t = TEXT[language]
    other = "zh" if language == "en" else "en"
    query = f"?email={quote(str(address), safe='@')}&" if address else "?"
    out = [
        "<!DOCTYPE html>",
        f'<html lang="{t["html_lang"]}">',
        '<head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(t['title'])}</title>",
        f"<style>{_STYLE}</style></head>",
        "<body><main>",
        f'<nav><a id="language" href="/{query}lang={other}" hreflang="{other}">'
        f'{escape(t["language"])}</a></nav>',
        f"<h1>{escape(t['title'])}</h1>",
        f"<p>{escape(t['intro'])}</p>",
        '<form method="get" action="/">',
        f'<input type="hidden" name="lang" value="{language}">',
        f'<input id="email" type="email" name="email" autocomplete="email" required'
        f' aria-label="{escape(t["address"])}" placeholder="{escape(t["address"])}"'
        f' value="{escape(str(address) if address else typed)}">',
        f'<button type="submit">{escape(t["continue"])}</button>',
        "</form>",
    ]
    if error:
        out.append(f'<p id="error" class="error">{escape(t[error].format(domain=domain or ""))}</p>')
    if address is not None:
        shown = escape(str(address))
        link = f"/mobileconfig?email={quote(str(address), safe='@')}"
        out += [
            f'<h2 id="for-address">{escape(t["for_address"]).format(address=shown)}</h2>',
            f"<h2>{escape(t['apple'])}</h2>",
            f"<p>{escape(t['apple_steps'])}</p>",
            f'<p><a id="profile" class="button" href="{escape(link)}">{escape(t["download"])}</a></p>',
            f"<h2>{escape(t['outlook'])}</h2>",
            f'<p id="outlook">{escape(t["outlook_steps"]).format(address=shown)}</p>',
            f"<h2>{escape(t['other'])}</h2>",
            f"<p>{escape(t['other_steps'])}</p>",
        ]
    username = escape(str(address)) if address else escape(t["your_address"])
    out += [
        f"<h2>{escape(t['settings'])}</h2>",
        '<div class="table"><table id="settings">',
        f"<tr><th>{escape(t['kind'])}</th><th>{escape(t['server'])}</th><th>{escape(t['port'])}</th>"
        f"<th>{escape(t['security'])}</th></tr>",
    ]
    servers = settings.servers + ((settings.managesieve,) if settings.managesieve else ())
    out += [_server_row(t, server) for server in servers]
    out += [
        "</table></div>",
        f'<p><b>{escape(t["username"])}:</b> <span id="username">{username}</span><br>',
        f'<b>{escape(t["password"])}:</b> {escape(t["your_password"])}</p>',
    ]
    if settings.managesieve is not None:
        out += [f"<h2>{escape(t['filters'])}</h2>", f'<p id="filters">{escape(t["filters_steps"])}</p>']
    out.append("</main></body></html>")
    return ("\n".join(out) + "\n").encode("utf-8")


def _server_row(t: dict[str, str], server: ServerEndpoint) -> str:
    if server.protocol == SIEVE:
        kind, direction = "ManageSieve", t["filters"]
    else:
        kind = server.protocol.upper()
        direction = t["outgoing"] if server.protocol == SMTP else t["incoming"]
    security = t["ssl"] if server.security == SSL else t["starttls"]
    return (
        f'<tr data-listener="{server.listener}"><td>{kind}<br>'
        f"<small>{escape(direction)}</small></td>"
        # A port or "STARTTLS" broken over two lines is easy to misread.
        f'<td class="server">{escape(server.host)}</td><td class="nowrap">{server.port}</td>'
        f'<td class="nowrap">{escape(security)}</td></tr>'
    )
