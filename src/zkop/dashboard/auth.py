"""Who may look: where the dashboard listens (``--listen HOST:PORT``) and the token it asks for
once it listens beyond loopback.

The token is accepted from an ``Authorization: Bearer`` header, a ``token`` query parameter or
the cookie the page gets when it is first opened with ``?token=``, and it is checked on every
request, the event stream included. On loopback without a token the ``Host`` header must name a
loopback address too, so a web page elsewhere cannot read the dashboard through a DNS name that
points at 127.0.0.1 (DNS rebinding).
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie

from zkop.errors import ValidationError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8481
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT``, ``:PORT`` or ``PORT`` (loopback), ``HOST`` (the default
    port). Port 0 picks a free one."""
    text = value.strip()
    if not text:
        raise ValidationError("invalid --listen '': give HOST:PORT", hint="e.g. 127.0.0.1:8481 or 0.0.0.0:8481")
    host, port_text = DEFAULT_HOST, str(DEFAULT_PORT)
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (end + 1 < len(text) and text[end + 1] != ":"):
            raise ValidationError(f"invalid --listen {value!r}: an IPv6 address is written [ADDRESS]:PORT")
        host = text[1:end]
        if end + 1 < len(text):
            port_text = text[end + 2 :]
    elif text.isdigit():
        port_text = text
    elif text.count(":") > 1:
        raise ValidationError(f"invalid --listen {value!r}: write an IPv6 address in brackets, e.g. [::1]:8481")
    else:
        host, sep, rest = text.partition(":")
        host = host or DEFAULT_HOST
        if sep:
            port_text = rest
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValidationError(f"invalid --listen {value!r}: the port must be a number from 0 to 65535")
    if not host or any(c.isspace() or c in "/?#@" for c in host):
        raise ValidationError(f"invalid --listen {value!r}: {host!r} is not a host name or address")
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this machine only."""
    bare = host.strip().strip("[]").lower()
    if bare in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    return secrets.token_urlsafe(24)


def host_of(header: str) -> str:
    """The host part of a ``Host`` header (``name:port``, ``[v6]:port``)."""
    header = header.strip()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


@dataclass(frozen=True)
class Denied:
    status: int  # 401: no token given, 403: a wrong token or a foreign Host
    message: str


@dataclass(frozen=True)
class Guard:
    """The check every request passes. ``token`` None: open, but only to loopback Host names."""

    token: str | None
    cookie_name: str = "zkop_dashboard"

    def given(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        auth = headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        if query.get("token"):
            return query["token"]
        raw = headers.get("cookie")
        if raw:
            try:
                jar = SimpleCookie(raw)
            except CookieError:
                return None
            morsel = jar.get(self.cookie_name)
            if morsel is not None and morsel.value:
                return morsel.value
        return None

    def check(self, headers: Mapping[str, str], query: Mapping[str, str]) -> Denied | None:
        if self.token is None:
            host = headers.get("host")
            if host is not None and not is_loopback(host_of(host)):
                return Denied(
                    403,
                    f"this dashboard answers only to loopback names (Host: {host} refused); "
                    "to serve other machines, listen beyond loopback (it then asks for a token)",
                )
            return None
        given = self.given(headers, query)
        if given is None:
            return Denied(
                401,
                "this dashboard needs a token: open it as http://HOST:PORT/?token=TOKEN with the token "
                "`zkop dashboard` printed (or was given with --token / ZKOP_DASHBOARD_TOKEN), "
                "or send Authorization: Bearer TOKEN",
            )
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return Denied(403, "the dashboard token is wrong")
        return None

    def set_cookie(self) -> str | None:
        """The Set-Cookie value that lets the page's later requests (assets, the event stream)
        carry the token it was opened with."""
        if self.token is None:
            return None
        return f"{self.cookie_name}={self.token}; Path=/; HttpOnly; SameSite=Strict"


__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "Denied",
    "Guard",
    "host_of",
    "is_loopback",
    "new_token",
    "parse_listen",
]
