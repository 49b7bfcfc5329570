"""The address printed in books (the QR code's target): what a phone on the same network can open.

`FABULA_PUBLIC_URL` wins. Otherwise a server listening on every interface (`--host 0.0.0.0`) is reached at this
machine's LAN address; a server listening on loopback only cannot be reached from a phone at all, and the UI and
the CLI say so and how to fix it.

`AllowedHostsGuard` is the other side of the address: the `Host` names the server answers to. A page on a
domain an attacker re-points at this machine (DNS rebinding) sends that domain as `Host`; without the check
it would read and change books as if it were the studio itself.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from shared.errors import InvalidRequest
from shared.http_errors import send_error
from shared.settings import Settings

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


# ---- the hosts the server answers to ------------------------------------------------------------------------------
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


@dataclass(frozen=True)
class HostRule:
    """Which `Host` names are served. Any IP address is: DNS rebinding needs a name the attacker controls, and
    health probes and phones on the LAN use the address."""

    names: frozenset[str]
    any_host: bool = False

    def allows(self, hostname: str) -> bool:
        if self.any_host or hostname in self.names:
            return True
        try:
            ipaddress.ip_address(hostname)
            return True
        except ValueError:
            pass
        return any(name.startswith(".") and (hostname.endswith(name) or hostname == name[1:]) for name in self.names)

    def describe(self) -> str:
        named = sorted(name for name in self.names if name not in LOOPBACK_NAMES)
        return ", ".join(["localhost", "its IP addresses", *named])


def host_rule(settings: Settings) -> HostRule:
    """localhost, this machine's name, FABULA_PUBLIC_URL's host and FABULA_ALLOWED_HOSTS (`*`: every host;
    `.example.com` or `*.example.com`: the domain and its subdomains)."""
    names = set(LOOPBACK_NAMES)
    machine = socket.gethostname().lower()
    if machine:
        names |= {machine, machine + ".local"}
    if settings.public_url:
        public_host = urlsplit(settings.public_url.strip()).hostname
        if public_host:
            names.add(public_host.lower())
    any_host = False
    for entry in settings.allowed_hosts:
        name = entry.strip().lower().rstrip(".")
        if name == "*":
            any_host = True
        elif name.startswith("*."):
            names.add(name[1:])
        elif name:
            names.add(name)
    return HostRule(frozenset(names), any_host=any_host)


def hostname_of(host_header: str) -> str | None:
    """The name (or address, without IPv6 brackets) in a `Host` header; None when it does not parse."""
    try:
        parts = urlsplit("//" + host_header.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return None
    return (parts.hostname or "").rstrip(".") or None


class AllowedHostsGuard:
    """Answer 400 to a request whose `Host` names a host this server does not answer to (see `host_rule`)."""

    def __init__(self, app: ASGIApp, *, rule: HostRule) -> None:
        self.app = app
        self.rule = rule

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not self.rule.any_host:
            sent = next((value.decode("latin-1") for key, value in scope.get("headers") or [] if key == b"host"), None)
            hostname = hostname_of(sent) if sent is not None else None
            # No `Host` at all is HTTP/1.0 from a program; a browser always sends one.
            if sent is not None and (hostname is None or not self.rule.allows(hostname)):
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                await send_error(send, InvalidRequest(
                    f"This server does not answer to the host {sent[:100]!r}: it answers to {self.rule.describe()}. "
                    "To serve it under that name, add it to FABULA_ALLOWED_HOSTS (comma-separated) or set FABULA_PUBLIC_URL.",
                    param="Host",
                ))
                return
        await self.app(scope, receive, send)
