"""Per-app access: bearer tokens that scope a reader to the apps it may see.

The tokens file (`logd serve --tokens FILE`) has one token a line, then the
apps it may read, comma separated, or `*` for every app:

    # team payments
    3f9c2d0e8b7a41c6a5d2e9f0b1c4d7e8 payments,payments-worker
    a71e4b9c0d2f48e6b3c5d7e9f1a2b4c6 *

Blank lines and lines starting with `#` are skipped. Clients send
`Authorization: Bearer TOKEN`. With tokens loaded, every /api/ route but
the OpenAPI document needs one (`guard`), and every handler narrows its
filters to the token's apps (`scoped`), so a token never sees another
app's lines, counts, labels or names: asking for such an app is 403
whether or not it exists. Without a tokens file every reader sees every
app, which is why logd then serves HTTP on loopback only (`check_bind`).

Tokens are kept as SHA-256 digests, so a lookup takes the same time
whatever prefix of a valid token a caller guesses.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import orjson
from aiohttp import web

from logd.errors import ConfigError
from query.filters import Filters, restricted
from query.keys import TOKENS

# Shorter tokens are too easy to guess for a service on the network.
MIN_TOKEN = 16
ALL_APPS = "*"
OPEN_PATHS = frozenset({"/api/v1/openapi.json"})

Apps = frozenset[str] | None
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Tokens:
    """The tokens of a tokens file and the apps each may read (None: all)."""

    def __init__(self, grants: Mapping[str, Apps]) -> None:
        self._grants = {_digest(token): apps for token, apps in grants.items()}

    def __len__(self) -> int:
        return len(self._grants)

    def apps(self, token: str) -> Apps:
        """Return the apps `token` may read; KeyError for an unknown token."""
        return self._grants[_digest(token)]


def load(path: Path) -> Tokens:
    """Read a tokens file; ConfigError names the file and line of a mistake."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--tokens {path}: cannot read it: {exc}") from exc
    return parse(text, str(path))


def parse(text: str, source: str = "tokens") -> Tokens:
    """Read the tokens file format; `source` names it in errors."""
    grants: dict[str, Apps] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"--tokens {source} line {number}"
        token, _, apps = line.replace("\t", " ").partition(" ")
        if len(token) < MIN_TOKEN or not token.isprintable():
            raise ConfigError(
                f"{where}: expected a token of at least {MIN_TOKEN} printable "
                "characters, a space, then apps"
            )
        if token in grants:
            raise ConfigError(f"{where}: the token is already given above")
        grants[token] = _apps(apps.strip(), where)
    return Tokens(grants)


def check_bind(host: str, tokens: Tokens | None, insecure: bool) -> None:
    """Refuse to serve every app's lines beyond loopback without tokens."""
    if tokens is not None or insecure or _is_loopback(host):
        return
    raise ConfigError(
        f"--http {host}: serving HTTP beyond loopback needs --tokens FILE "
        "(or --insecure to let anyone who can connect read every app)"
    )


def allowed_apps(request: web.Request) -> Apps:
    """Return the apps this request may read (None: all), or raise 401.

    Without tokens loaded every request may read every app.
    """
    tokens = request.app.get(TOKENS)
    if tokens is None:
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("send Authorization: Bearer TOKEN", "")
    try:
        return tokens.apps(token.strip())
    except KeyError:
        raise _unauthorized("unknown token", "invalid_token") from None


def scoped(wanted: Filters, allowed: Apps) -> Filters:
    """Narrow `wanted` to the apps in `allowed`, or raise 403.

    Asking for no app means every app the token may read; asking for one
    it may not read is refused as such, saying nothing of whether it exists.
    """
    if allowed is None:
        return wanted
    if not wanted.apps:
        return restricted(wanted, tuple(sorted(allowed)))
    for app in wanted.apps:
        if app not in allowed:
            raise web.HTTPForbidden(
                text=_error(f"this token may not read app {app!r}", "app"),
                content_type="application/json",
            )
    return wanted


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate every /api/ request before its handler runs."""
    if request.path.startswith("/api/") and request.path not in OPEN_PATHS:
        allowed_apps(request)
    return await handler(request)


def _apps(text: str, where: str) -> Apps:
    if text == ALL_APPS:
        return None
    apps = [app.strip() for app in text.split(",")]
    if not text or not all(apps) or ALL_APPS in apps:
        raise ConfigError(
            f"{where}: expected apps after the token, comma separated, or *"
        )
    return frozenset(apps)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _unauthorized(reason: str, error: str) -> web.HTTPUnauthorized:
    challenge = 'Bearer realm="logd"'
    if error:
        challenge += f', error="{error}"'
    return web.HTTPUnauthorized(
        text=_error(reason, "Authorization"),
        content_type="application/json",
        headers={"WWW-Authenticate": challenge},
    )


def _error(reason: str, parameter: str) -> str:
    return orjson.dumps({"error": reason, "parameter": parameter}).decode()
