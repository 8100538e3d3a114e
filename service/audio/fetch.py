"""Audio from an http or https URI, fetched so that a caller cannot make the server reach where it must not (SSRF)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import socket
import ssl
import urllib.parse
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import TypeAlias

import httpx

from service.errors import AudioTooLarge, InvalidUri, UriForbidden, UriNotFound, UriTimeout, UriUnavailable

__all__ = [
    "Resolver",
    "UriFetcher",
    "UriPolicy",
    "address_rule",
    "parse_allowed_ports",
    "parse_allowlist",
    "redact_uri",
]

log = logging.getLogger(__name__)

IPAddress: TypeAlias = IPv4Address | IPv6Address
IPNetwork: TypeAlias = IPv4Network | IPv6Network
Resolver: TypeAlias = Callable[[str, int], Awaitable[list[str]]]
"""host, port -> the IP addresses (as text) a connection to them may go to."""

_DEFAULT_PORTS = {"http": 80, "https": 443}
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_GONE = frozenset({404, 410})
_MAX_URI_CHARS = 8192
_ALLOWLIST_SETTING = "TRANSCRIBE_URI_ALLOWLIST"
_PORTS_SETTING = "TRANSCRIBE_URI_ALLOWED_PORTS"
_REDIRECTS_SETTING = "TRANSCRIBE_URI_MAX_REDIRECTS"

# A host whose last label is a number is an IPv4 address in one of the forms inet_aton (and so getaddrinfo) reads:
# 1 to 4 parts, each decimal, octal (leading 0) or hexadecimal (0x), e.g. 127.1, 2130706433, 0x7f.0.0.1.
_NUMBER = r"(?:0x[0-9a-f]*|[0-9]+)"
_ENDS_IN_NUMBER = re.compile(rf"(?:^|\.){_NUMBER}$")
_IPV4_ANY_FORM = re.compile(rf"{_NUMBER}(?:\.{_NUMBER}){{0,3}}")
_HOST_NAME = re.compile(r"[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*")

_CARRIER_GRADE_NAT = IPv4Network("100.64.0.0/10")
_PRIVATE: tuple[IPNetwork, ...] = (
    IPv4Network("10.0.0.0/8"),
    IPv4Network("172.16.0.0/12"),
    IPv4Network("192.168.0.0/16"),
    IPv6Network("fc00::/7"),
    IPv6Network("fec0::/10"),  # site-local, the deprecated forerunner of fc00::/7
)
_IPV4_MAPPED = IPv6Network("::ffff:0:0/96")
_IPV4_COMPATIBLE = IPv6Network("::/96")
_NAT64 = IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = IPv6Network("64:ff9b:1::/48")

# Checked in order: the first that applies names the refusal.
_ADDRESS_RULES: tuple[tuple[str, Callable[[IPAddress], bool]], ...] = (
    ("unspecified", lambda a: a.is_unspecified),
    ("loopback", lambda a: a.is_loopback),
    ("link-local", lambda a: a.is_link_local),
    ("multicast", lambda a: a.is_multicast),
    ("carrier-grade-nat", lambda a: a in _CARRIER_GRADE_NAT),
    ("private", lambda a: any(a in network for network in _PRIVATE)),
    # Documentation, benchmarking, 240/4, broadcast, IPv4-compatible, local-use NAT64 and anything else not global.
    ("reserved", lambda a: a.is_reserved or not a.is_global or a in _IPV4_COMPATIBLE or a in _NAT64_LOCAL),
)
_RULE_WORDS = {
    "unspecified": "an unspecified",
    "loopback": "a loopback",
    "link-local": "a link-local",
    "multicast": "a multicast",
    "carrier-grade-nat": "a carrier-grade NAT",
    "private": "a private",
    "reserved": "a reserved or otherwise non-public",
}


def parse_allowlist(text: str) -> tuple[frozenset[str], tuple[IPNetwork, ...]]:
    """The host names and networks of a comma-separated allowlist; raises ValueError naming a bad entry."""
    hosts: set[str] = set()
    networks: list[IPNetwork] = []
    for raw in text.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if "/" in entry or ":" in entry or _ENDS_IN_NUMBER.search(entry.removesuffix(".")):
            networks.append(_parse_network(entry))
        else:
            hosts.add(_parse_host_name(entry))
    return frozenset(hosts), tuple(networks)


def _parse_network(entry: str) -> IPNetwork:
    try:
        network = ip_network(entry)
    except ValueError:
        try:
            loose = ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(
                f"{entry!r} is neither a host name nor an IPv4 or IPv6 address or CIDR range (e.g. 10.20.0.0/16)"
            ) from None
        raise ValueError(f"{entry!r} has bits set after its prefix length; write {loose}") from None
    if isinstance(network, IPv6Network) and network.subnet_of(_IPV4_MAPPED):
        # ::ffff:a.b.c.d is the IPv4 address a.b.c.d: addresses are matched in that form.
        return IPv4Network((int(network.network_address) & 0xFFFFFFFF, network.prefixlen - 96))
    return network


def _parse_host_name(entry: str) -> str:
    name = entry
    if not name.isascii():
        try:
            name = httpx.URL(scheme="http", host=name).raw_host.decode("ascii")
        except (httpx.InvalidURL, UnicodeError):
            name = ""
    name = name.removesuffix(".")
    if not _HOST_NAME.fullmatch(name) or len(name) > 253:
        raise ValueError(f"{entry!r} is neither a host name (no scheme, port or path) nor an IPv4 or IPv6 CIDR range")
    return name


def parse_allowed_ports(text: str) -> frozenset[int]:
    """The ports of a comma-separated list such as "80,443"; raises ValueError naming a bad entry."""
    ports: set[int] = set()
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        if not entry.isdigit() or not 1 <= int(entry) <= 65535:
            raise ValueError(f"{entry!r} is not a TCP port number (1 to 65535)")
        ports.add(int(entry))
    if not ports:
        raise ValueError("name at least one TCP port, e.g. 80,443")
    return frozenset(ports)


@dataclass(frozen=True)
class UriPolicy:
    """Where the server may fetch audio from, and how long and how far it follows a URI."""

    allowlist_hosts: frozenset[str] = frozenset()
    allowlist_networks: tuple[IPNetwork, ...] = ()
    allowed_ports: frozenset[int] = frozenset({80, 443})
    connect_timeout_seconds: float = 10.0
    read_timeout_seconds: float = 30.0
    total_timeout_seconds: float = 600.0
    max_redirects: int = 5

    def __post_init__(self) -> None:
        if min(self.connect_timeout_seconds, self.read_timeout_seconds, self.total_timeout_seconds) <= 0:
            raise ValueError("URI timeouts must be above 0 seconds")
        if self.max_redirects < 0:
            raise ValueError("max_redirects must be 0 or more")
        if not self.allowed_ports or not all(1 <= port <= 65535 for port in self.allowed_ports):
            raise ValueError("allowed_ports must hold TCP port numbers (1 to 65535)")

    @classmethod
    def from_text(
        cls,
        allowlist: str,
        ports: str,
        *,
        connect_timeout_seconds: float,
        read_timeout_seconds: float,
        total_timeout_seconds: float,
        max_redirects: int,
    ) -> UriPolicy:
        """A policy from the comma-separated allowlist and port settings; raises ValueError with a clear message."""
        hosts, networks = parse_allowlist(allowlist)
        return cls(
            allowlist_hosts=hosts,
            allowlist_networks=networks,
            allowed_ports=parse_allowed_ports(ports),
            connect_timeout_seconds=connect_timeout_seconds,
            read_timeout_seconds=read_timeout_seconds,
            total_timeout_seconds=total_timeout_seconds,
            max_redirects=max_redirects,
        )


@dataclass(frozen=True)
class _Hop:
    """One URI to request: the original (hop 0) or the target of a redirect, checked statically."""

    url: httpx.URL
    index: int
    host: str
    """The ASCII (IDNA) host without brackets or a trailing dot."""
    port: int
    literal: IPAddress | None
    """The address when the host is an IP literal, in the form connected to."""
    allowlisted: bool
    """The host name is on the operator's allowlist."""

    @property
    def where(self) -> str:
        """How messages name this hop's host."""
        return _where(self.index)


class UriFetcher:
    """Fetches recordings from http and https URIs under a UriPolicy: checked addresses only, bounded in every way."""

    def __init__(
        self, policy: UriPolicy, resolver: Resolver | None = None, *, tls_context: ssl.SSLContext | None = None
    ) -> None:
        self.policy = policy
        self._resolver = resolver or _system_resolver
        # Server certificates are verified against the URI's host name (certifi's CAs, or SSL_CERT_FILE/_DIR).
        self._tls = tls_context or httpx.create_ssl_context()
        self._timeouts = httpx.Timeout(
            connect=policy.connect_timeout_seconds,
            read=policy.read_timeout_seconds,
            write=policy.read_timeout_seconds,
            pool=policy.connect_timeout_seconds,
        )

    def check(self, uri: str) -> None:
        """Refuse a URI the server would never fetch, from its text alone (no DNS, no network)."""
        self._hop(self._parse(uri, 0), 0)

    async def open(self, uri: str, max_bytes: int | None = None) -> AsyncGenerator[bytes, None]:
        """The body of the recording at `uri`, chunk by chunk as it arrives; closing it early closes the connection."""
        deadline = asyncio.get_running_loop().time() + self.policy.total_timeout_seconds
        hop = self._hop(self._parse(uri, 0), 0)
        async with contextlib.AsyncExitStack() as stack:
            while True:
                log.debug("fetching audio from %s (hop %d)", _redacted(hop.url), hop.index)
                response = await self._request(hop, deadline, stack)
                if response.status_code not in _REDIRECTS:
                    break
                location = response.headers.get("location")
                await stack.aclose()
                if location is None:
                    raise UriUnavailable(
                        f"{hop.where} answered a redirect without a Location; the recording could not be fetched",
                        metadata={"remote_status": str(response.status_code)},
                    )
                if hop.index >= self.policy.max_redirects:
                    limit = self.policy.max_redirects
                    raise UriForbidden(
                        f"the URI redirects more than {limit} times, the most this server follows; an operator can "
                        f"raise the limit with {_REDIRECTS_SETTING}",
                        metadata={"rule": "redirect-limit", "limit": str(limit)},
                    )
                hop = self._hop(self._follow(hop, location), hop.index + 1)
            _check_status(hop, response)
            _check_length(response, max_bytes)
            received = 0
            chunks = response.aiter_bytes()
            while True:
                with self._remote_errors(hop):
                    async with asyncio.timeout_at(deadline):
                        chunk = await anext(chunks, None)
                if chunk is None:
                    break
                received += len(chunk)
                if max_bytes is not None and received > max_bytes:
                    raise _too_large(max_bytes)
                yield chunk
            log.debug("fetched %d bytes from %s", received, _redacted(hop.url))

    def _hop(self, url: httpx.URL, index: int) -> _Hop:
        """The static checks of one hop: scheme, host, port, and the address rules of an IP literal."""
        host, literal = _parse_host(url, index)
        port = url.port if url.port is not None else _DEFAULT_PORTS[url.scheme]
        if not 1 <= port <= 65535:
            raise _invalid(index, "is not a valid URI: its port is out of range", "port")
        if port not in self.policy.allowed_ports:
            allowed = ", ".join(str(p) for p in sorted(self.policy.allowed_ports))
            subject = "the URI" if index == 0 else f"the URI's redirect {index}"
            raise UriForbidden(
                f"{subject} uses port {port}, which this server does not fetch from (allowed: {allowed}); an operator "
                f"can allow it with {_PORTS_SETTING}",
                metadata={"rule": "port", "port": str(port), **_hop_metadata(index)},
            )
        hop = _Hop(url, index, host, port, literal, allowlisted=host in self.policy.allowlist_hosts)
        if literal is not None:
            self._check_address(hop, literal, resolved=False)
        return hop

    def _check_address(self, hop: _Hop, address: IPAddress, *, resolved: bool) -> None:
        """Raise UriForbidden, naming the rule but never the address, unless the policy allows the address."""
        if hop.allowlisted or any(address in network for network in self.policy.allowlist_networks):
            return
        if (rule := address_rule(address)) is not None:
            raise _forbidden_address(hop.index, rule, resolved=resolved)

    def _parse(self, uri: str, index: int) -> httpx.URL:
        """The URI parsed; InvalidUri unless it is an absolute http or https URI with a host."""
        try:
            return _parse(uri, index)
        except InvalidUri as error:
            if error.metadata.get("problem") == "syntax":
                self._explain_unparsable(uri, index)
            raise

    def _follow(self, hop: _Hop, location: str) -> httpx.URL:
        """The URI a redirect leads to: its Location, resolved against the hop's URI when relative."""
        try:
            target = str(hop.url.join(location))
        except (httpx.InvalidURL, TypeError):
            self._explain_unparsable(location, hop.index + 1)
            raise _invalid(hop.index + 1, "is not a valid URI", "syntax") from None
        return self._parse(target, hop.index + 1)

    def _explain_unparsable(self, uri: str, index: int) -> None:
        """Name the rule broken by an unparsable URI whose host the resolver would still read as IPv4 (0177.0.0.1)."""
        try:
            host = urllib.parse.urlsplit(uri).hostname or ""
        except ValueError:
            return
        if not _IPV4_ANY_FORM.fullmatch(host):
            return
        try:
            address = IPv4Address(socket.inet_aton(host))
        except OSError:
            return
        if any(address in network for network in self.policy.allowlist_networks):
            return
        if (rule := address_rule(address)) is not None:
            raise _forbidden_address(index, rule, resolved=False)

    async def _addresses(self, hop: _Hop, deadline: float) -> list[IPAddress]:
        """The checked addresses of a hop: its literal, or its name resolved once with every answer allowed."""
        if hop.literal is not None:
            return [hop.literal]
        loop = asyncio.get_running_loop()
        limit = min(deadline, loop.time() + self.policy.connect_timeout_seconds)
        try:
            async with asyncio.timeout_at(limit):
                answers = await self._resolver(hop.host, hop.port)
        except TimeoutError:
            raise self._timeout(hop, "total" if limit >= deadline else "connect") from None
        except OSError:
            raise UriUnavailable(
                f"{hop.where} could not be resolved to an address",
                metadata={"problem": "dns", **_hop_metadata(hop.index)},
            ) from None
        addresses: list[IPAddress] = []
        for answer in answers:
            try:
                address = _canonical(ip_address(answer.split("%", 1)[0]))
            except ValueError:
                continue
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise UriUnavailable(
                f"{hop.where} could not be resolved to an address",
                metadata={"problem": "dns", **_hop_metadata(hop.index)},
            )
        for address in addresses:
            self._check_address(hop, address, resolved=True)
        return addresses

    async def _request(self, hop: _Hop, deadline: float, stack: contextlib.AsyncExitStack) -> httpx.Response:
        """Send the hop's GET to each of its checked addresses in turn until one connects; the response streams."""
        addresses = await self._addresses(hop, deadline)
        headers = {"host": hop.url.netloc.decode("ascii"), "accept-encoding": "identity", "user-agent": "transcribe"}
        if hop.url.userinfo:
            token = base64.b64encode(f"{hop.url.username}:{hop.url.password}".encode()).decode("ascii")
            headers["authorization"] = f"Basic {token}"
        extensions: dict[str, object] = {"timeout": self._timeouts.as_dict()}
        if hop.literal is None and hop.url.scheme == "https":
            extensions["sni_hostname"] = hop.host  # SNI and certificate checks use the name, the socket the address
        for attempt, address in enumerate(addresses, start=1):
            # A new transport per hop: a connection (and its verified certificate) is never reused for another host.
            transport = httpx.AsyncHTTPTransport(verify=self._tls, retries=0)
            stack.push_async_callback(transport.aclose)
            url = httpx.URL(scheme=hop.url.scheme, host=str(address), port=hop.port, raw_path=hop.url.raw_path)
            request = httpx.Request("GET", url, headers=headers, extensions=extensions)
            with self._remote_errors(hop):
                try:
                    async with asyncio.timeout_at(deadline):
                        response = await transport.handle_async_request(request)
                except (httpx.ConnectError, httpx.ConnectTimeout):
                    if attempt < len(addresses):
                        continue  # the next checked address of the same host
                    raise
            stack.push_async_callback(response.aclose)
            return response
        raise AssertionError("unreachable: a hop has at least one address")

    @contextlib.contextmanager
    def _remote_errors(self, hop: _Hop) -> Iterator[None]:
        """Turn transport failures and timeouts into domain errors that reveal no address and no URI."""
        try:
            yield
        except TimeoutError:
            raise self._timeout(hop, "total") from None
        except httpx.ConnectTimeout:
            raise self._timeout(hop, "connect") from None
        except httpx.TimeoutException:
            raise self._timeout(hop, "read") from None
        except httpx.ConnectError as error:
            if _caused_by_tls(error):
                raise UriUnavailable(
                    f"the TLS handshake with {hop.where} failed (certificate or protocol); the recording could not "
                    "be fetched",
                    metadata={"problem": "tls", **_hop_metadata(hop.index)},
                ) from None
            raise UriUnavailable(
                f"{hop.where} refused or dropped the connection; the recording could not be fetched",
                metadata={"problem": "connect", **_hop_metadata(hop.index)},
            ) from None
        except (httpx.TransportError, httpx.DecodingError):
            raise UriUnavailable(
                f"{hop.where} broke off the transfer or answered malformed HTTP; the recording could not be fetched",
                metadata={"problem": "transfer", **_hop_metadata(hop.index)},
            ) from None

    def _timeout(self, hop: _Hop, phase: str) -> UriTimeout:
        """The timeout error of a phase: connect (with name resolution), read, or the whole fetch."""
        policy = self.policy
        if phase == "connect":
            seconds, text = policy.connect_timeout_seconds, f"{hop.where} did not accept a connection within"
        elif phase == "read":
            seconds, text = policy.read_timeout_seconds, f"{hop.where} sent nothing for"
        else:
            seconds, text = policy.total_timeout_seconds, "fetching the URI took longer than"
        return UriTimeout(
            f"{text} {seconds:g} s; the recording could not be fetched",
            metadata={"phase": phase, "limit_seconds": f"{seconds:g}", **_hop_metadata(hop.index)},
        )


def address_rule(address: IPAddress) -> str | None:
    """The rule that forbids fetching from an address, or None for a public unicast address."""
    if isinstance(address, IPv6Address):
        if address.ipv4_mapped is not None:
            return address_rule(address.ipv4_mapped)
        if not address.is_unspecified and not address.is_loopback:  # :: and ::1 are IPv4-compatible in form only
            embedded = _embedded_ipv4(address)
            for inner in embedded:
                if (rule := address_rule(inner)) is not None:
                    return rule
            if embedded and address in _NAT64:
                return None  # the translator reaches only the public IPv4 address inside
    return next((rule for rule, applies in _ADDRESS_RULES if applies(address)), None)


def _embedded_ipv4(address: IPv6Address) -> list[IPv4Address]:
    """The IPv4 addresses an IPv6 address carries: IPv4-compatible, NAT64, 6to4, Teredo client and server."""
    low32 = IPv4Address(int(address) & 0xFFFFFFFF)
    found: list[IPv4Address] = []
    if address in _IPV4_COMPATIBLE or address in _NAT64 or address in _NAT64_LOCAL:
        found.append(low32)
    if (six_to_four := address.sixtofour) is not None:
        found.append(six_to_four)
    if (teredo := address.teredo) is not None:
        server, client = teredo
        found += [client, server]
    return found


def _canonical(address: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address as the IPv4 address it is; any other address unchanged."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def redact_uri(uri: str) -> str:
    """scheme://host[:port]/path of a URI, without userinfo, query or fragment (for logs and job metadata)."""
    try:
        url = httpx.URL(uri)
    except (httpx.InvalidURL, TypeError):
        return "(not a valid URI)"
    if url.scheme not in _DEFAULT_PORTS or not url.host:
        return f"{url.scheme}:(redacted)" if url.scheme.isalnum() else "(redacted)"
    return _redacted(url)


def _redacted(url: httpx.URL) -> str:
    path = url.raw_path.split(b"?", 1)[0].decode("ascii", "replace")
    return f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}{path}"


def _parse(uri: str, index: int) -> httpx.URL:
    """The URI parsed; InvalidUri unless it is an absolute http or https URI with a host."""
    if len(uri) > _MAX_URI_CHARS:
        raise _invalid(index, f"is longer than {_MAX_URI_CHARS} characters", "length")
    try:
        url = httpx.URL(uri)
    except (httpx.InvalidURL, TypeError):
        raise _invalid(index, "is not a valid URI", "syntax") from None
    if url.scheme not in _DEFAULT_PORTS:
        raise _invalid(index, "has a scheme this server does not fetch from; use http or https", "scheme")
    if not url.raw_host:
        raise _invalid(index, "has no host", "host")
    return url


def _parse_host(url: httpx.URL, index: int) -> tuple[str, IPAddress | None]:
    """The host as connected to by name (ASCII, no brackets, no trailing dot), and its address when it is a literal."""
    raw = url.raw_host.decode("ascii").lower()
    if ":" in raw:
        if "%" in raw:
            raise _invalid(index, "has an IPv6 zone identifier, which this server does not support", "host")
        try:
            return raw, _canonical(IPv6Address(raw))
        except ValueError:
            raise _invalid(index, "has an invalid IPv6 address as its host", "host") from None
    name = raw.removesuffix(".")
    if not _HOST_NAME.fullmatch(name) or len(name) > 253:
        raise _invalid(index, "has an invalid host name", "host")
    if not _ENDS_IN_NUMBER.search(name):
        return name, None
    if not _IPV4_ANY_FORM.fullmatch(name):
        raise _invalid(index, "has an invalid IPv4 address as its host", "host")
    try:
        return name, IPv4Address(socket.inet_aton(name))
    except OSError:
        raise _invalid(index, "has an invalid IPv4 address as its host", "host") from None


def _check_status(hop: _Hop, response: httpx.Response) -> None:
    """Raise unless the final answer is a success: 404 and 410 are UriNotFound, anything else UriUnavailable."""
    status = response.status_code
    if 200 <= status < 300:
        return
    metadata = {"remote_status": str(status), **_hop_metadata(hop.index)}
    if status in _GONE:
        raise UriNotFound(f"{hop.where} answered {status}: there is no recording at that URI", metadata=metadata)
    raise UriUnavailable(
        f"{hop.where} answered {status} instead of the recording; the recording could not be fetched",
        metadata=metadata,
    )


def _check_length(response: httpx.Response, max_bytes: int | None) -> None:
    """Refuse a body whose declared length is over the limit before reading any of it."""
    declared = response.headers.get("content-length", "")
    encoded = response.headers.get("content-encoding", "identity").strip().lower() not in {"", "identity"}
    if max_bytes is not None and declared.isdigit() and not encoded and int(declared) > max_bytes:
        raise _too_large(max_bytes)


def _caused_by_tls(error: BaseException) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _where(index: int) -> str:
    return "the URI's host" if index == 0 else f"the host of the URI's redirect {index}"


def _forbidden_address(index: int, rule: str, *, resolved: bool) -> UriForbidden:
    verb = "resolves to" if resolved else "is"
    return UriForbidden(
        f"{_where(index)} {verb} {_RULE_WORDS[rule]} address, which this server does not fetch from; an operator can "
        f"allow it with {_ALLOWLIST_SETTING}",
        metadata={"rule": rule, **_hop_metadata(index)},
    )


def _hop_metadata(index: int) -> dict[str, str]:
    return {"redirect": str(index)} if index else {}


def _invalid(index: int, problem_text: str, problem: str) -> InvalidUri:
    subject = "the audio URI" if index == 0 else f"the URI's redirect {index}"
    return InvalidUri(f"{subject} {problem_text}", metadata={"problem": problem, **_hop_metadata(index)})


def _too_large(max_bytes: int) -> AudioTooLarge:
    return AudioTooLarge(
        f"audio is larger than the limit of {max_bytes} bytes", metadata={"limit_bytes": str(max_bytes)}
    )


async def _system_resolver(host: str, port: int) -> list[str]:
    """The TCP addresses of a host from the system's resolver (getaddrinfo: /etc/hosts, then DNS)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]
