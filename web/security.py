"""Safe by default: who may ask (a token off loopback), which Host names are answered, and the headers
every response carries.

Bound to loopback, only requests naming a loopback Host are answered, so a web page elsewhere cannot
reach the server through DNS rebinding. Bound to any other address, every request must carry the token:
as `Authorization: Bearer TOKEN`, as `?token=TOKEN` (the page's address, once: the answer moves it into
a cookie and drops it from the address bar), or as that cookie. Anywhere, a POST that a browser sent
from another site's page is refused.
"""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TOKEN_COOKIE = "assoc_token_{port}"  # cookies are kept per host, not per port: one name per server
TOKEN_PARAM = "token"
TOKEN_CHARACTERS = re.compile(r"[A-Za-z0-9._~-]{8,}")
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
# No inline script or style, nothing from another origin, no plugins, no framing, no <base> tricks.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "font-src 'none'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
NEEDS_TOKEN = "this server needs its token: open the address it printed, or send 'Authorization: Bearer TOKEN'"
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),  # the token may be in the page's address
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


def is_loopback(host: str) -> bool:
    """Whether binding to `host` keeps the server to this machine."""
    name = host.strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    return secrets.token_urlsafe(24)


def valid_token(token: str) -> bool:
    """A token that travels unchanged in an address, a header and a cookie."""
    return bool(TOKEN_CHARACTERS.fullmatch(token))


class Guard:
    """ASGI middleware: the Host check on loopback, the token check when there is one, security headers."""

    def __init__(self, app: ASGIApp, *, token: str | None, loopback_only: bool) -> None:
        self.app = app
        self.token = token
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        if self.loopback_only and not is_loopback(_host_name(headers.get("host", ""))):
            await _refuse(scope, send, 403, "this server answers only requests addressed to this machine (localhost)")
            return
        if scope["method"] not in ("GET", "HEAD") and not _same_origin(headers):
            await _refuse(scope, send, 403, "requests sent by pages of other sites are refused")
            return
        if self.token is not None:
            query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            in_query = next((value for key, value in query if key == TOKEN_PARAM), None)
            if not self._granted(scope, headers, in_query):
                await _refuse(scope, send, 401, NEEDS_TOKEN)
                return
            if in_query is not None and scope["method"] == "GET" and not scope["path"].startswith("/api/"):
                await self._keep_in_cookie(scope, send, [(k, v) for k, v in query if k != TOKEN_PARAM])
                return
        await self.app(scope, receive, _with_headers(send))

    def _granted(self, scope: Scope, headers: dict[str, str], in_query: str | None) -> bool:
        assert self.token is not None
        bearer = headers.get("authorization", "")
        candidates = [in_query, bearer[7:] if bearer.lower().startswith("bearer ") else None]
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except CookieError:  # a malformed Cookie header carries no token
            cookie = SimpleCookie()
        if _cookie_name(scope) in cookie:
            candidates.append(cookie[_cookie_name(scope)].value)
        return any(c is not None and secrets.compare_digest(c.encode(), self.token.encode()) for c in candidates)

    async def _keep_in_cookie(self, scope: Scope, send: Send, rest: list[tuple[str, str]]) -> None:
        """Answer the page's address with its token by a redirect to the same address without it."""
        assert self.token is not None
        # Never "//host": a path that starts so would send the browser to another site.
        location = quote("/" + scope["path"].lstrip("/")) + ("?" + urlencode(rest) if rest else "")
        cookie = f"{_cookie_name(scope)}={self.token}; Path=/; HttpOnly; SameSite=Lax"
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [(b"location", location.encode()), (b"set-cookie", cookie.encode()), *SECURITY_HEADERS],
            }
        )
        await send({"type": "http.response.body", "body": b""})


def _cookie_name(scope: Scope) -> str:
    server = scope.get("server") or (None, 0)
    return TOKEN_COOKIE.format(port=server[1] or 0)


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _same_origin(headers: dict[str, str]) -> bool:
    """A request a browser sent from a page of this server, or one no browser sent (it names no Origin)."""
    origin = headers.get("origin")
    return origin is None or urlsplit(origin).netloc == headers.get("host", "")


def _host_name(host: str) -> str:
    """The name in a Host header, without its port ('[::1]:8765' -> '::1')."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _with_headers(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
        await send(message)

    return sending


async def _refuse(scope: Scope, send: Send, status: int, text: str) -> None:
    """The refusal as the API's JSON error under /api/, as plain text elsewhere."""
    if scope["path"].startswith("/api/"):
        body, kind = json.dumps({"error": text}).encode(), b"application/json"
    else:
        body, kind = (text + "\n").encode(), b"text/plain; charset=utf-8"
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*headers, *SECURITY_HEADERS]})
    await send({"type": "http.response.body", "body": body})
