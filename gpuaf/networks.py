"""The optional allow-list of client networks (settings: portal.trusted_networks)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from gpuaf.errors import PublicError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class UntrustedNetwork(PublicError):
    status = 403


def check_client(address: str, networks: Sequence[Network]) -> None:
    """Refuse a client outside the trusted networks, saying why; no list means all allowed."""
    if not networks:
        return
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        ip = None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip is None or not any(ip in net for net in networks):
        raise UntrustedNetwork(
            f"Access from {address or 'an unknown address'} is not allowed: this portal "
            "accepts logins and API calls only from the facility's trusted networks."
        )


def forwarded_client(
    peer: str | None, forwarded_for: str | None, proxies: Sequence[Network] = ()
) -> str:
    """The client address: the proxy (on loopback, or in ``proxies``) appends it to
    X-Forwarded-For; from anyone else the header is ignored."""
    if not peer or not forwarded_for:
        return peer or ""
    try:
        ip = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return peer
    if ip.is_loopback or any(ip in net for net in proxies):
        return forwarded_for.split(",")[-1].strip()
    return peer
