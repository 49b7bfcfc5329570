"""The address printed in books (the QR code's target): what a phone on the same network can open.

`FABULA_PUBLIC_URL` wins. Otherwise a server listening on every interface (`--host 0.0.0.0`) is reached at this
machine's LAN address; a server listening on loopback only cannot be reached from a phone at all, and the UI and
the CLI say so and how to fix it.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

_EVERY_INTERFACE = ("0.0.0.0", "::", "")


@dataclass(frozen=True)
class PublicAddress:
    url: str
    warning: str | None = None


def lan_address() -> str | None:
    """This machine's LAN IPv4 address: the one its own name resolves to, else the source address the routing
    table would use for a private-range destination (a UDP socket's `connect` only consults the table: no packet
    is sent)."""
    try:
        _, _, addresses = socket.gethostbyname_ex(socket.gethostname())
    except OSError:
        addresses = []
    for address in addresses:
        if _usable(address):
            return address
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.255.255.255", 9))
            address = probe.getsockname()[0]
    except OSError:
        return None
    return address if _usable(address) else None


def _usable(address: str) -> bool:
    parsed = ipaddress.ip_address(address)
    return not (parsed.is_loopback or parsed.is_link_local or parsed.is_unspecified)


def public_address(public_url: str | None, host: str, port: int) -> PublicAddress:
    if public_url:
        return PublicAddress(public_url.rstrip("/"))
    if host in _EVERY_INTERFACE:
        lan = lan_address()
        if lan:
            return PublicAddress(f"http://{lan}:{port}")
        return PublicAddress(
            f"http://127.0.0.1:{port}",
            "This machine has no network address a phone could reach, so the QR codes in books open only on this computer. "
            "Set FABULA_PUBLIC_URL to the address phones use.",
        )
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    url = f"http://{host}:{port}"
    if loopback:
        return PublicAddress(
            url,
            f"Fabula listens on {host} only, so the QR codes in books open only on this computer, not on a phone. "
            "To read books on a phone on the same network, start it with `--host 0.0.0.0` (or set FABULA_WEB_HOST=0.0.0.0), "
            "or set FABULA_PUBLIC_URL to the address phones use.",
        )
    return PublicAddress(url)
