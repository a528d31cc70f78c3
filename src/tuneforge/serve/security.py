"""Who may call the server: loopback binding or an API key, Bearer auth, request size limits."""

from __future__ import annotations

import hmac
import ipaddress

from tuneforge.errors import ConfigError

LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name we cannot vouch for: treat it as public


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse to expose an unauthenticated model server beyond this machine."""
    if not is_loopback(host) and not api_key:
        raise ConfigError(
            f"--host {host} exposes the server beyond this machine: set --api-key (or TUNEFORGE_API_KEY), "
            "or bind 127.0.0.1"
        )
    if api_key is not None and len(api_key) < 8:
        raise ConfigError("--api-key must be at least 8 characters")


def key_ok(token: str | None, api_key: str) -> bool:
    """Constant-time comparison of a presented token with the key."""
    return token is not None and hmac.compare_digest(token.encode(), api_key.encode())


def bearer_ok(authorization: str | None, api_key: str) -> bool:
    """Constant-time check of an `Authorization: Bearer <key>` header."""
    if not authorization:
        return False
    scheme, _, token = authorization.partition(" ")
    return scheme.lower() == "bearer" and key_ok(token.strip(), api_key)
