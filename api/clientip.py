"""The client's address: the peer, or what a trusted proxy says in X-Forwarded-For.

``X-Forwarded-For`` is believed only when the peer is one of ``TEGATA_TRUSTED_PROXIES``;
then the right-most address that is not itself a trusted proxy is the client (RFC 7239,
7.4: the left of the list is whatever the client chose to send).
"""

from __future__ import annotations

import ipaddress

from fastapi import Request

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _trusted(request: Request) -> tuple[Network, ...]:
    """TEGATA_TRUSTED_PROXIES, parsed once by ``build_app``."""
    found: tuple[Network, ...] = getattr(request.app.state, "trusted_proxies", ())
    return found


def _is_in(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in n for n in networks)


# hops read from the right; a longer list's left end is the client's to choose anyway
MAX_HOPS = 64


def forwarded_hops(request: Request) -> list[str]:
    """Every X-Forwarded-For hop, all header lines joined in order (RFC 9110, 5.3: a proxy
    such as HAProxy's ``option forwardfor`` may add its own line after the client's), the
    right-most ``MAX_HOPS`` only: what trusted proxies appended is at the right."""
    lines = request.headers.getlist("x-forwarded-for")
    hops = [h.strip() for h in ",".join(lines).split(",")]
    return [h for h in hops if h][-MAX_HOPS:]


def client_ip(request: Request) -> str | None:
    peer = request.client.host if request.client else None
    trusted = _trusted(request)
    if peer is None or not trusted or not _is_in(peer, trusted):
        return peer
    for hop in reversed(forwarded_hops(request)):
        if not _is_in(hop, trusted):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # a malformed hop: keep the peer we know
    return peer


def over_https(request: Request) -> bool:
    """The client reached us over TLS: directly, or through a trusted proxy whose
    ``X-Forwarded-Proto`` (its last value: the one it set) says https."""
    if request.url.scheme == "https":
        return True
    peer = request.client.host if request.client else None
    if peer is None or not _is_in(peer, _trusted(request)):
        return False
    said = [v.strip().lower() for v in
            ",".join(request.headers.getlist("x-forwarded-proto")).split(",") if v.strip()]
    return bool(said) and said[-1] == "https"
