"""Which URLs docflow may fetch or call: the address rules against SSRF.

A client names a URL (a document to fetch, a webhook to call) and a docflow worker
connects to it from inside the deployment, where it can reach what the client cannot:
the cloud's instance metadata (credentials), Redis, the cluster's services. So:

1. **The URL itself** (`parse_url`, no network): http or https only, at most
   MAX_URL_CHARS, a host, no credentials in it (`user:pass@`), a valid port, no
   whitespace or control characters.
2. **Every address its host resolves to** (`resolve_checked`): refused when it is
   loopback, private (RFC 1918), link-local, unique-local (fc00::/7), multicast,
   unspecified, reserved, shared (100.64.0.0/10) or otherwise not globally routable;
   IPv4 addresses inside IPv6 ones (::ffff:a.b.c.d, 6to4, Teredo, NAT64) are judged
   as the IPv4 address they carry. If *any* address of the host is refused the host
   is: a name that resolves to one public and one private address is not a public
   name. `allow_private=True` (DOCFLOW_ALLOW_PRIVATE_URLS, for an intranet and for
   tests against servers on 127.0.0.1) lifts these rules, except one:
3. **Cloud metadata endpoints** (CLOUD_METADATA_ADDRESSES: 169.254.169.254,
   fd00:ec2::254, 169.254.170.2, 100.100.100.200, ...) are refused always: no document
   or webhook is ever served there, and what is served there is the node's credentials.

The caller must then connect to an address `resolve_checked` returned, never resolve
the name again: a name whose DNS answer changes between the check and the connect
(DNS rebinding) would otherwise be checked at a public address and reached at a
private one. Every redirect is a new URL: parsed and resolved again the same way.

Pure standard library (socket, ipaddress): the gateway uses rule 1 without resolving
(it never fetches), the extractor (docflow.extractor.fetch) and the webhook sender all
three. Name resolution is a parameter (`Resolver`) so tests map names to any address
without DNS.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> the addresses the host resolves to, as strings.
Resolver = Callable[[str, int], list[str]]

MAX_URL_CHARS = 2048
SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}

# Instance metadata services: AWS (IPv4, IPv6 on Nitro, ECS task metadata, the VPC's
# DNS and time servers), GCP and Azure (the same 169.254.169.254), Alibaba, Oracle.
CLOUD_METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.169.253", "169.254.169.123", "169.254.170.2", "169.254.170.23",
    "fd00:ec2::254", "fd00:ec2::253", "fd00:ec2::123", "fd00:ec2::23",
    "100.100.100.200", "192.0.0.192",
))
_NAT64_PREFIXES = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class UrlRefused(ValueError):
    """The URL or an address of its host is not allowed; the message says why (and is
    safe to show the client who named the URL)."""


@dataclass(frozen=True)
class ParsedUrl:
    """A URL that passed rule 1."""

    url: str
    scheme: str
    host: str  # lowercase; an IPv6 literal without its brackets
    port: int  # the scheme's default when the URL has none
    parts: SplitResult

    @property
    def host_is_ip(self) -> bool:
        return ip_or_none(self.host) is not None

    def with_address(self, address: IPAddress) -> str:
        """This URL with its host replaced by `address` (the one checked): what to connect to."""
        host = f"[{address}]" if address.version == 6 else str(address)
        netloc = host if self.parts.port is None else f"{host}:{self.port}"
        return self.parts._replace(netloc=netloc).geturl()

    @property
    def host_header(self) -> str:
        """The Host header the server expects (the name, and the port if not the default)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


def parse_url(url: str) -> ParsedUrl:
    """The URL, if it passes rule 1; else UrlRefused with the reason."""
    if not isinstance(url, str) or not url:
        raise UrlRefused("the URL must be a non-empty string")
    if len(url) > MAX_URL_CHARS:
        raise UrlRefused(f"the URL is longer than {MAX_URL_CHARS} characters")
    if any(char.isspace() or ord(char) < 0x20 or ord(char) == 0x7F for char in url):
        raise UrlRefused("the URL holds whitespace or control characters")
    try:
        url.encode("utf-8")
    except UnicodeEncodeError:
        raise UrlRefused("the URL is not valid Unicode (it holds a lone surrogate)") from None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused(f"not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise UrlRefused(f"only http and https URLs are accepted, not {parts.scheme or 'a URL without scheme'!r}")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UrlRefused("the URL must not carry credentials (user:password@)")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UrlRefused("the URL has no host")
    if port == 0:
        raise UrlRefused("the URL's port must be between 1 and 65535")
    if ":" in host and ip_or_none(host) is None:
        raise UrlRefused("the URL's host is not a valid IPv6 address")
    if ip_or_none(host) is None:
        try:
            host.encode("idna")
        except UnicodeError:
            raise UrlRefused("the URL's host is not a valid domain name") from None
    return ParsedUrl(url=url, scheme=scheme, host=host, port=port or DEFAULT_PORTS[scheme], parts=parts)


def ip_or_none(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo's client, NAT64)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in prefix for prefix in _NAT64_PREFIXES):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal(address: IPAddress, allow_private: bool = False) -> str | None:
    """Why a connection to `address` is refused, or None if it is allowed."""
    if address in CLOUD_METADATA_ADDRESSES:
        return f"{address} is a cloud metadata address"
    if address.version == 6:
        inner = _embedded_ipv4(address)
        if inner is not None:
            why = refusal(inner, allow_private)
            return f"{address} carries {why}" if why else None
    if allow_private:
        return None
    for kind, is_kind in (("loopback", address.is_loopback), ("unspecified", address.is_unspecified),
                          ("link-local", address.is_link_local), ("multicast", address.is_multicast),
                          ("reserved", address.is_reserved)):
        if is_kind:
            return f"{address} is a {kind} address"
    if address.version == 6 and address in ipaddress.ip_network("fc00::/7"):
        return f"{address} is a unique-local address"
    if address.version == 6 and address.is_site_local:
        return f"{address} is a site-local address"
    if address.is_private:
        return f"{address} is a private address"
    if not address.is_global:
        return f"{address} is not a public address"
    return None


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolves `host` to (TCP), in its order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))


class ResolutionFailed(OSError):
    """The host did not resolve; `permanent` when it does not exist (as opposed to a
    resolver that failed for now)."""

    def __init__(self, message: str, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


def resolve_checked(parsed: ParsedUrl, allow_private: bool = False,
                    resolver: Resolver = system_resolver) -> list[IPAddress]:
    """The addresses to connect to for `parsed`, each checked: UrlRefused if any address
    of the host is refused, ResolutionFailed if it does not resolve. An IP literal is
    checked as it is, without a resolver."""
    literal = ip_or_none(parsed.host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            resolved = resolver(parsed.host, parsed.port)
        except socket.gaierror as exc:
            permanent = exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME))
            raise ResolutionFailed(f"the host {parsed.host} could not be resolved: {exc.strerror or exc}",
                                   permanent) from None
        except UnicodeError:
            raise UrlRefused(f"the host {parsed.host!r} is not a valid domain name") from None
        addresses = [address for address in map(ip_or_none, resolved) if address is not None]
        if not addresses:
            raise ResolutionFailed(f"the host {parsed.host} resolves to no address", permanent=True)
    for address in addresses:
        why = refusal(address, allow_private)
        if why is not None:
            hint = "" if allow_private or address in CLOUD_METADATA_ADDRESSES else \
                " (DOCFLOW_ALLOW_PRIVATE_URLS=true allows private addresses)"
            raise UrlRefused(f"the host {parsed.host} is refused: {why}{hint}")
    return addresses


def check_url(url: str, allow_private: bool = False, resolver: Resolver = system_resolver
              ) -> tuple[ParsedUrl, list[IPAddress]]:
    """Rules 1 to 3 for `url`: the parsed URL and the checked addresses to connect to."""
    parsed = parse_url(url)
    return parsed, resolve_checked(parsed, allow_private, resolver)


def check_literal_host(parsed: ParsedUrl, allow_private: bool = False) -> None:
    """Rules 2 and 3 for a host that is an IP literal, without resolving anything (a
    name is left to whoever connects); UrlRefused if refused."""
    literal = ip_or_none(parsed.host)
    if literal is not None:
        resolve_checked(parsed, allow_private)
