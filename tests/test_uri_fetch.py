"""Audio from a URI: fetched byte-exact from a loopback server, and never from where the server must not reach."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import tempfile
import threading
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from service.audio.fetch import UriFetcher, UriPolicy, address_rule, parse_allowed_ports, parse_allowlist, redact_uri
from service.errors import (
    AudioTooLarge,
    InvalidUri,
    TranscribeError,
    UriForbidden,
    UriNotFound,
    UriTimeout,
    UriUnavailable,
)
from service.settings import Settings, describe_invalid
from service.wiring import build_uri_fetcher
from tests.certs import make_pki
from tests.conftest import DATA

WAV = (DATA / "speech_en.wav").read_bytes()
CHUNK = 64 * 1024
SECRET = "s3cret-query-value"


@dataclass
class LoopbackServer:
    """A plain HTTP server on 127.0.0.1 in a thread, with routes for every remote behaviour the tests need."""

    port: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    disconnected: threading.Event = field(default_factory=threading.Event)
    hosts: list[str] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)

    def url(self, path: str, *, host: str = "127.0.0.1", scheme: str = "http") -> str:
        """An absolute URI of a route on this server, reached as `host`."""
        return f"{scheme}://{host}:{self.port}{path}"


class Handler(BaseHTTPRequestHandler):
    """The routes: a file, redirects, statuses, stalls, large and endless bodies, an echo of the Host header."""

    protocol_version = "HTTP/1.1"
    state: LoopbackServer

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet."""

    def do_GET(self) -> None:
        """Answer one request by the first segment of its path."""
        self.state.hosts.append(self.headers.get("host", ""))
        path, _, query = self.path.partition("?")
        route, _, rest = path.strip("/").partition("/")
        answer = getattr(self, f"route_{route.replace('-', '_').replace('.', '_')}", None)
        if answer is None:
            self.send_body(b"", status=404)
        else:
            answer(rest, urllib.parse.parse_qs(query))

    def route_audio_wav(self, rest: str, query: dict[str, list[str]]) -> None:
        """The WAV file."""
        self.send_body(WAV)

    def route_redirect(self, rest: str, query: dict[str, list[str]]) -> None:
        """/redirect/N: N more redirects, alternating relative and absolute; the last climbs out with a dot segment."""
        left = int(rest)
        if left == 0:
            self.send_redirect("../audio.wav")
        elif left % 2:
            self.send_redirect(f"/redirect/{left - 1}")
        else:
            self.send_redirect(self.state.url(f"/redirect/{left - 1}"))

    def route_to(self, rest: str, query: dict[str, list[str]]) -> None:
        """/to?target=URI: a redirect to URI."""
        self.send_redirect(query["target"][0])

    def route_no_location(self, rest: str, query: dict[str, list[str]]) -> None:
        """A redirect status without a Location."""
        self.send_response(302)
        self.send_header("content-length", "0")
        self.end_headers()

    def route_status(self, rest: str, query: dict[str, list[str]]) -> None:
        """/status/NNN: an empty answer with that status."""
        self.send_body(b"", status=int(rest))

    def route_stall(self, rest: str, query: dict[str, list[str]]) -> None:
        """4 of 100 declared bytes, then nothing until the test ends."""
        self.send_response(200)
        self.send_header("content-length", "100")
        self.end_headers()
        self.wfile.write(b"RIFF")
        self.wfile.flush()
        self.state.release.wait()

    def route_declared_large(self, rest: str, query: dict[str, list[str]]) -> None:
        """A Content-Length of 1 GB, then nothing until the test ends."""
        self.send_response(200)
        self.send_header("content-length", str(10**9))
        self.end_headers()
        self.wfile.flush()
        self.state.release.wait()

    def route_endless(self, rest: str, query: dict[str, list[str]]) -> None:
        """A chunked body without end; notes when the client has gone away."""
        self.send_response(200)
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        try:
            while not self.state.release.is_set():
                self.wfile.write(b"%x\r\n%s\r\n" % (CHUNK, b"\0" * CHUNK))
                self.wfile.flush()
        except OSError:
            self.state.disconnected.set()

    def route_echo_host(self, rest: str, query: dict[str, list[str]]) -> None:
        """The Host header the request carried, as the body."""
        self.send_body(self.headers.get("host", "").encode())

    def send_body(self, body: bytes, status: int = 200) -> None:
        """A complete response with a Content-Length."""
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_redirect(self, location: str) -> None:
        """A 302 to `location`."""
        self.send_response(302)
        self.send_header("location", location)
        self.send_header("content-length", "0")
        self.end_headers()


@contextlib.contextmanager
def serving(tls: ssl.SSLContext | None = None) -> Iterator[LoopbackServer]:
    """Run a LoopbackServer (HTTPS with `tls`) until the block ends; stalled handlers are released first."""
    state = LoopbackServer()
    handler = type("BoundHandler", (Handler,), {"state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    """One loopback HTTP server for the module."""
    with serving() as state:
        yield state


@dataclass
class Connections:
    """Every outgoing connection attempt made through asyncio or the socket module while a test runs."""

    attempts: list[tuple[str, Any]] = field(default_factory=list)
    refuse: bool = False

    def record(self, how: str, where: Any) -> None:
        """Note one attempt; fail it when the test forbids connections."""
        self.attempts.append((how, where))
        if self.refuse:
            raise AssertionError(f"a connection was attempted: {how} {where}")

    def hosts(self) -> set[str]:
        """The hosts asyncio was asked to connect to."""
        return {str(where[0]) for how, where in self.attempts if how == "create_connection"}


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> Connections:
    """Record every connection attempt: loop.create_connection, loop.sock_connect and socket.connect."""
    seen = Connections()
    create_connection = asyncio.base_events.BaseEventLoop.create_connection
    sock_connect = asyncio.selector_events.BaseSelectorEventLoop.sock_connect
    connect = socket.socket.connect

    async def recording_create_connection(
        self: Any, factory: Any, host: Any = None, port: Any = None, **kw: Any
    ) -> Any:
        seen.record("create_connection", (host, port))
        return await create_connection(self, factory, host, port, **kw)

    async def recording_sock_connect(self: Any, sock: Any, address: Any) -> Any:
        seen.record("sock_connect", address)
        return await sock_connect(self, sock, address)

    def recording_connect(self: Any, address: Any) -> Any:
        seen.record("socket.connect", address)
        return connect(self, address)

    monkeypatch.setattr(asyncio.base_events.BaseEventLoop, "create_connection", recording_create_connection)
    monkeypatch.setattr(asyncio.selector_events.BaseSelectorEventLoop, "sock_connect", recording_sock_connect)
    monkeypatch.setattr(socket.socket, "connect", recording_connect)
    return seen


@pytest.fixture
def no_connections(connections: Connections) -> Connections:
    """Fail any connection attempt, and keep the list to show none was made."""
    connections.refuse = True
    return connections


class StubResolver:
    """A resolver that answers from a table, a different answer per call when given several, and counts calls."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        """The next answer for `host`."""
        self.calls.append((host, port))
        answers = self.answers[host]
        return answers[min(len(self.calls_for(host)), len(answers)) - 1]

    def calls_for(self, host: str) -> list[tuple[str, int]]:
        """The calls made for one host."""
        return [call for call in self.calls if call[0] == host]


def loopback_fetcher(server: LoopbackServer, resolver: StubResolver | None = None, **policy: Any) -> UriFetcher:
    """A fetcher that may reach the loopback server (127.0.0.1/32 and its port allowlisted) and nothing else private."""
    settings: dict[str, Any] = {
        "allowlist_networks": (IPv4Network("127.0.0.1/32"),),
        "allowed_ports": frozenset({server.port}),
        "connect_timeout_seconds": 5.0,
        "read_timeout_seconds": 5.0,
        "total_timeout_seconds": 10.0,
    }
    return UriFetcher(UriPolicy(**settings | policy), resolver)


async def collect(chunks: AsyncIterator[bytes], into: list[bytes]) -> None:
    """Append every chunk to `into` as it arrives, so a test sees what came before an error."""
    async for chunk in chunks:
        into.append(chunk)


async def fetch(fetcher: UriFetcher, uri: str, max_bytes: int | None = None) -> bytes:
    """The whole body the fetcher yields."""
    return b"".join([chunk async for chunk in fetcher.open(uri, max_bytes)])


async def test_a_recording_is_fetched_byte_exact_in_chunks_as_it_arrives(server: LoopbackServer) -> None:
    """A WAV file served over HTTP arrives byte for byte, in chunks of at most 64 KiB."""
    chunks = [chunk async for chunk in loopback_fetcher(server).open(server.url("/audio.wav"))]
    assert b"".join(chunks) == WAV
    assert len(chunks) > 1
    assert max(len(chunk) for chunk in chunks) <= CHUNK


async def test_a_redirect_chain_is_followed_with_relative_and_absolute_locations(server: LoopbackServer) -> None:
    """Four redirects (relative, absolute, and one with a dot segment) lead to the file, fetched byte-exact."""
    fetcher = loopback_fetcher(server, max_redirects=4)
    assert await fetch(fetcher, server.url("/redirect/3")) == WAV


async def test_one_redirect_more_than_the_limit_is_refused(server: LoopbackServer) -> None:
    """With max_redirects=2, a chain of 3 redirects is refused with rule redirect-limit; 0 follows none."""
    with pytest.raises(UriForbidden) as caught:
        await fetch(loopback_fetcher(server, max_redirects=2), server.url("/redirect/2"))
    assert caught.value.metadata == {"rule": "redirect-limit", "limit": "2"}
    with pytest.raises(UriForbidden):
        await fetch(loopback_fetcher(server, max_redirects=0), server.url("/redirect/0"))


@pytest.mark.parametrize(
    ("status", "error"),
    [(404, UriNotFound), (410, UriNotFound), (500, UriUnavailable), (503, UriUnavailable), (403, UriUnavailable)],
)
async def test_remote_statuses_map_to_domain_errors(
    server: LoopbackServer, status: int, error: type[TranscribeError]
) -> None:
    """404 and 410 are URI_NOT_FOUND; 5xx and 401/403 are URI_UNAVAILABLE; the remote status is in the metadata."""
    with pytest.raises(error) as caught:
        await fetch(loopback_fetcher(server), server.url(f"/status/{status}"))
    assert type(caught.value) is error
    assert caught.value.metadata["remote_status"] == str(status)


async def test_a_redirect_without_location_is_unavailable(server: LoopbackServer) -> None:
    """A 302 that names no Location is URI_UNAVAILABLE."""
    with pytest.raises(UriUnavailable):
        await fetch(loopback_fetcher(server), server.url("/no-location"))


async def test_a_refused_connection_is_unavailable() -> None:
    """A port where nothing listens (bound, not listening) gives URI_UNAVAILABLE with problem connect."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        fetcher = UriFetcher(
            UriPolicy(allowlist_networks=(IPv4Network("127.0.0.1/32"),), allowed_ports=frozenset({port}))
        )
        with pytest.raises(UriUnavailable) as caught:
            await fetch(fetcher, f"http://127.0.0.1:{port}/audio.wav")
    assert caught.value.metadata["problem"] == "connect"


async def test_a_server_that_stops_sending_times_out(server: LoopbackServer) -> None:
    """A body that stalls after 4 bytes ends with URI_TIMEOUT (phase read) after the read timeout."""
    fetcher = loopback_fetcher(server, read_timeout_seconds=0.3)
    received: list[bytes] = []
    with pytest.raises(UriTimeout) as caught:
        await collect(fetcher.open(server.url("/stall")), received)
    assert b"".join(received) == b"RIFF"
    assert caught.value.metadata["phase"] == "read"


async def test_the_total_timeout_bounds_the_whole_fetch(server: LoopbackServer) -> None:
    """With a long read timeout, a stalled body still ends at the total timeout, as URI_TIMEOUT phase total."""
    fetcher = loopback_fetcher(server, read_timeout_seconds=60.0, total_timeout_seconds=0.3)
    with pytest.raises(UriTimeout) as caught:
        await fetch(fetcher, server.url("/stall"))
    assert caught.value.metadata["phase"] == "total"


async def test_a_declared_length_over_the_limit_is_refused_before_the_body(server: LoopbackServer) -> None:
    """Content-Length over max_bytes is AUDIO_TOO_LARGE at once: the server never sends a body, yet no timeout."""
    fetcher = loopback_fetcher(server, read_timeout_seconds=60.0, total_timeout_seconds=60.0)
    async with asyncio.timeout(10):  # waiting for the body would hit this instead of the limit
        with pytest.raises(AudioTooLarge) as caught:
            await fetch(fetcher, server.url("/declared-large"), max_bytes=1_000_000)
    assert caught.value.message == "audio is larger than the limit of 1000000 bytes"
    assert caught.value.metadata == {"limit_bytes": "1000000"}


async def test_a_chunked_body_stops_once_it_passes_the_limit(server: LoopbackServer) -> None:
    """An endless chunked body ends with AUDIO_TOO_LARGE; no more than max_bytes were yielded."""
    limit = 5 * CHUNK + 7
    received: list[bytes] = []
    with pytest.raises(AudioTooLarge):
        await collect(loopback_fetcher(server).open(server.url("/endless"), max_bytes=limit), received)
    assert 0 < sum(map(len, received)) <= limit


async def test_closing_the_stream_early_closes_the_connection(server: LoopbackServer) -> None:
    """Closing the generator after one chunk of an endless body makes the server's next write fail."""
    server.disconnected.clear()
    async with contextlib.aclosing(loopback_fetcher(server).open(server.url("/endless"))) as chunks:
        assert await anext(chunks)
    assert await asyncio.to_thread(server.disconnected.wait, 10)


@pytest.mark.parametrize(
    ("target", "rule"),
    [("http://169.254.169.254/latest/meta-data/", "link-local"), ("http://10.0.0.1/", "private")],
)
async def test_a_redirect_to_a_forbidden_address_is_refused(
    server: LoopbackServer, connections: Connections, target: str, rule: str
) -> None:
    """The allowed loopback server redirecting to the metadata address or a private one is refused before connecting."""
    fetcher = loopback_fetcher(server, allowed_ports=frozenset({server.port, 80}))
    uri = server.url("/to?target=" + urllib.parse.quote(target, safe=""))
    with pytest.raises(UriForbidden) as caught:
        await fetch(fetcher, uri)
    assert caught.value.metadata == {"rule": rule, "redirect": "1"}
    assert connections.hosts() == {"127.0.0.1"}


FORBIDDEN = [
    ("127.0.0.1", "loopback"),
    ("127.1", "loopback"),
    ("2130706433", "loopback"),
    ("0x7f000001", "loopback"),
    ("0x7f.0.0.1", "loopback"),
    ("0177.0.0.1", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),
    ("100.64.0.1", "carrier-grade-nat"),
    ("0.0.0.0", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("192.0.2.1", "reserved"),
    ("198.18.0.1", "reserved"),
    ("[::1]", "loopback"),
    ("[::]", "unspecified"),
    ("[fe80::1]", "link-local"),
    ("[fc00::1]", "private"),
    ("[::ffff:127.0.0.1]", "loopback"),
    ("[::ffff:7f00:1]", "loopback"),
    ("[::127.0.0.1]", "loopback"),
    ("[64:ff9b::a9fe:a9fe]", "link-local"),
    ("[64:ff9b:1::808:808]", "reserved"),
    ("[2002:7f00:1::]", "loopback"),
    ("[2001:0:4136:e378:8000:63bf:80ff:fffe]", "loopback"),
    ("[2001:db8::1]", "reserved"),
    ("[ff02::1]", "multicast"),
]


@pytest.mark.parametrize(("host", "rule"), FORBIDDEN)
async def test_every_forbidden_address_form_is_refused_without_a_packet(
    no_connections: Connections, host: str, rule: str
) -> None:
    """An IP literal of a forbidden kind, in any spelling, is URI_FORBIDDEN naming its rule, statically and on open."""
    fetcher = UriFetcher(UriPolicy())
    uri = f"http://user:pa55word@{host}/latest/meta-data/?token={SECRET}"
    with pytest.raises(UriForbidden) as checked:
        fetcher.check(uri)
    with pytest.raises(UriForbidden) as opened:
        await fetch(fetcher, uri)
    for error in (checked.value, opened.value):
        assert error.metadata == {"rule": rule}
        assert host.strip("[]") not in error.message
        assert SECRET not in error.message
        assert "pa55word" not in error.message
    assert no_connections.attempts == []


@pytest.mark.parametrize("host", ["8.8.8.8", "[2606:4700::1111]", "[64:ff9b::808:808]", "[::ffff:8.8.8.8]"])
def test_public_addresses_pass_the_static_check(host: str) -> None:
    """Public unicast literals pass check(), NAT64 of a public IPv4 address and IPv4-mapped public ones included."""
    UriFetcher(UriPolicy()).check(f"https://{host}/a.wav")


async def test_localhost_is_refused_through_the_real_resolver(no_connections: Connections) -> None:
    """'localhost' resolves (from /etc/hosts) to loopback, so it is refused with no connection attempted."""
    fetcher = UriFetcher(UriPolicy())
    fetcher.check("http://localhost/a.wav")  # a name: nothing to say before resolving it
    with pytest.raises(UriForbidden) as caught:
        await fetch(fetcher, "http://localhost/a.wav")
    assert caught.value.metadata == {"rule": "loopback"}
    assert "resolves to a loopback address" in caught.value.message
    assert no_connections.attempts == []


async def test_one_forbidden_answer_among_public_ones_refuses_the_host(no_connections: Connections) -> None:
    """A name resolving to a public and a private address is refused: every answer must be allowed."""
    resolver = StubResolver({"mixed.test": [["93.184.216.34", "10.0.0.1"]]})
    fetcher = UriFetcher(UriPolicy(), resolver)
    fetcher.check("https://mixed.test/a.wav")
    assert resolver.calls == []  # check() never resolves
    with pytest.raises(UriForbidden) as caught:
        await fetch(fetcher, "https://mixed.test/a.wav")
    assert caught.value.metadata == {"rule": "private"}
    assert no_connections.attempts == []


async def test_the_host_is_resolved_once_and_the_checked_address_is_connected_to(
    server: LoopbackServer, connections: Connections
) -> None:
    """The resolver is asked once; its checked answer is the one connected to, with the name in the Host header."""
    resolver = StubResolver({"audio.test": [["127.0.0.1"], ["93.184.216.34"]]})
    body = await fetch(loopback_fetcher(server, resolver), server.url("/echo-host", host="audio.test"))
    assert body == f"audio.test:{server.port}".encode()
    assert resolver.calls == [("audio.test", server.port)]
    assert connections.hosts() == {"127.0.0.1"}


async def test_each_redirect_hop_is_resolved_once(server: LoopbackServer, connections: Connections) -> None:
    """A redirect from one name to another asks the resolver once for each, never twice for the same hop."""
    resolver = StubResolver({"a.test": [["127.0.0.1"], ["10.9.9.9"]], "b.test": [["127.0.0.1"], ["10.9.9.9"]]})
    target = urllib.parse.quote(server.url("/echo-host", host="b.test"), safe="")
    body = await fetch(loopback_fetcher(server, resolver), server.url(f"/to?target={target}", host="a.test"))
    assert body == f"b.test:{server.port}".encode()
    assert resolver.calls == [("a.test", server.port), ("b.test", server.port)]
    assert connections.hosts() == {"127.0.0.1"}


async def test_a_host_name_that_does_not_resolve_is_unavailable() -> None:
    """A name the resolver cannot find is URI_UNAVAILABLE with problem dns."""

    async def no_such_host(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(UriUnavailable) as caught:
        await fetch(UriFetcher(UriPolicy(), no_such_host), "https://nowhere.test/a.wav")
    assert caught.value.metadata == {"problem": "dns"}


@pytest.fixture(scope="module")
def tls_server() -> Iterator[tuple[LoopbackServer, ssl.SSLContext]]:
    """An HTTPS loopback server whose certificate names localhost and 127.0.0.1, and a client context trusting it."""
    with tempfile.TemporaryDirectory() as folder:
        pki = make_pki(Path(folder))
        server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_context.load_cert_chain(pki.server_cert, pki.server_key)
        client_context = ssl.create_default_context(cafile=pki.ca)
    names: list[str | None] = []
    server_context.sni_callback = lambda _socket, name, _context: names.append(name)
    with serving(server_context) as state:
        state.server_names = names
        yield state, client_context


async def test_https_verifies_the_certificate_against_the_name_not_the_address(
    tls_server: tuple[LoopbackServer, ssl.SSLContext],
) -> None:
    """Over https the name goes out as SNI and the certificate must match it, though the socket goes to the address."""
    server, trusted = tls_server
    resolver = StubResolver({"localhost": [["127.0.0.1"]], "wrong.test": [["127.0.0.1"]]})
    fetcher = UriFetcher(
        UriPolicy(allowlist_networks=(IPv4Network("127.0.0.1/32"),), allowed_ports=frozenset({server.port})),
        resolver,
        tls_context=trusted,
    )
    assert await fetch(fetcher, server.url("/audio.wav", host="localhost", scheme="https")) == WAV
    assert server.server_names[-1] == "localhost"
    # The certificate also names 127.0.0.1, the address connected to: only checking the name refuses this.
    with pytest.raises(UriUnavailable) as caught:
        await fetch(fetcher, server.url("/audio.wav", host="wrong.test", scheme="https"))
    assert caught.value.metadata == {"problem": "tls"}


@pytest.mark.parametrize(
    "uri",
    [
        "ftp://example.com/a.wav",
        "file:///etc/passwd",
        "gopher://example.com:70/_x",
        "javascript:alert(1)",
        "data:audio/wav;base64,UklGRg==",
        "http:///a.wav",
        "http://:80/a.wav",
        "https://",
        "//example.com/a.wav",
        "example.com/a.wav",
        "http://exa mple.com/a.wav",
        "http://[::1/a.wav",
        "http://example.com:99999/a.wav",
        "http://1.2.3.4.5/a.wav",
        "http://[fe80::1%25eth0]/a.wav",
        "not a uri at all",
        "",
    ],
)
async def test_malformed_uris_and_other_schemes_are_invalid(no_connections: Connections, uri: str) -> None:
    """Other schemes, a missing host, an impossible port and garbage are URI_INVALID, statically and on open."""
    fetcher = UriFetcher(UriPolicy())
    with pytest.raises(InvalidUri):
        fetcher.check(uri)
    with pytest.raises(InvalidUri):
        await fetch(fetcher, uri)
    assert no_connections.attempts == []


@pytest.mark.parametrize("uri", ["http://example.com:8080/a.wav", "https://example.com:22/a.wav"])
async def test_a_port_not_allowed_is_forbidden_even_for_allowlisted_hosts(
    no_connections: Connections, uri: str
) -> None:
    """Ports outside allowed_ports are URI_FORBIDDEN with rule port, for an allowlisted host name too."""
    for policy in (UriPolicy(), UriPolicy(allowlist_hosts=frozenset({"example.com"}))):
        fetcher = UriFetcher(policy)
        with pytest.raises(UriForbidden) as caught:
            fetcher.check(uri)
        assert caught.value.metadata["rule"] == "port"
        with pytest.raises(UriForbidden):
            await fetch(fetcher, uri)
    assert no_connections.attempts == []


def test_the_allowlist_opens_names_and_networks_and_only_those() -> None:
    """Allowlisted names match case-insensitively; a network opens its addresses and their IPv4-mapped form only."""
    policy = UriPolicy.from_text(
        "MinIO.Internal., 10.20.0.0/16, fd00:1::/32",
        "80, 443",
        connect_timeout_seconds=1,
        read_timeout_seconds=1,
        total_timeout_seconds=1,
        max_redirects=0,
    )
    assert policy.allowlist_hosts == frozenset({"minio.internal"})
    assert policy.allowed_ports == frozenset({80, 443})
    fetcher = UriFetcher(policy)
    for allowed in (
        "http://minio.INTERNAL/a",
        "http://10.20.1.2/a",
        "http://[::ffff:10.20.1.2]/a",
        "http://[fd00:1::5]/",
    ):
        fetcher.check(allowed)
    for refused in (
        "http://10.21.0.1/a",
        "http://[64:ff9b::a14:102]/a",
        "http://[2002:a14:102::]/a",
        "http://[fd00:2::5]/",
    ):
        with pytest.raises(UriForbidden):
            fetcher.check(refused)


@pytest.mark.parametrize(
    ("allowlist", "problem"),
    [
        ("10.0.0.1/8", "write 10.0.0.0/8"),
        ("http://minio.internal", "neither a host name"),
        ("minio.internal:9000", "neither a host name"),
        ("10.0.0.0/33", "neither a host name"),
        ("127.1", "neither a host name"),
        ("bad host", "neither a host name"),
    ],
)
def test_a_bad_allowlist_entry_is_refused_with_a_clear_message(allowlist: str, problem: str) -> None:
    """Each malformed allowlist entry raises ValueError quoting it and saying what is wrong."""
    with pytest.raises(ValueError, match=problem):
        parse_allowlist(allowlist)


@pytest.mark.parametrize("ports", ["", " , ", "http", "0", "65536", "80;443", "-1"])
def test_a_bad_port_list_is_refused(ports: str) -> None:
    """A port list that is empty or holds something other than 1 to 65535 raises ValueError."""
    with pytest.raises(ValueError, match="port"):
        parse_allowed_ports(ports)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("TRANSCRIBE_URI_ALLOWLIST", "10.0.0.1/8"), ("TRANSCRIBE_URI_ALLOWED_PORTS", "80,http")],
)
def test_a_bad_uri_setting_stops_start_up_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """Settings refuse a bad allowlist or port list, and the one-line report names the environment variable."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert describe_invalid(caught.value).startswith(f"{variable}: ")


def test_the_settings_build_the_fetcher() -> None:
    """build_uri_fetcher carries every URI setting into the policy."""
    settings = Settings(
        uri_allowlist="minio.internal,10.20.0.0/16",
        uri_allowed_ports="443,9000",
        uri_connect_timeout_seconds=2,
        uri_read_timeout_seconds=3,
        uri_timeout_seconds=4,
        uri_max_redirects=1,
    )
    assert build_uri_fetcher(settings).policy == UriPolicy(
        allowlist_hosts=frozenset({"minio.internal"}),
        allowlist_networks=(IPv4Network("10.20.0.0/16"),),
        allowed_ports=frozenset({443, 9000}),
        connect_timeout_seconds=2,
        read_timeout_seconds=3,
        total_timeout_seconds=4,
        max_redirects=1,
    )


def test_address_rules_cover_embedded_ipv4_both_ways() -> None:
    """An IPv6 form carrying a public IPv4 address is judged by its IPv6 kind; one carrying a private one is not."""
    assert address_rule(IPv6Network("2002:808:808::/48").network_address) is None
    assert address_rule(IPv6Network("2002:a00:1::/48").network_address) == "private"
    assert address_rule(IPv6Network("::808:808/128").network_address) == "reserved"


@pytest.mark.parametrize(
    ("uri", "redacted"),
    [
        ("https://user:pw@Example.com:8443/a/b.wav?sig=abc#frag", "https://example.com:8443/a/b.wav"),
        ("http://[::1]/x?y", "http://[::1]/x"),
        ("https://example.com/", "https://example.com/"),
        ("javascript:alert(1)", "javascript:(redacted)"),
        ("http://[::1", "(not a valid URI)"),
    ],
)
def test_redact_uri_keeps_scheme_host_port_and_path_only(uri: str, redacted: str) -> None:
    """redact_uri drops userinfo, query and fragment."""
    assert redact_uri(uri) == redacted


async def test_no_message_or_log_line_carries_the_query_or_userinfo(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Errors of every kind and all logs, DEBUG included, never contain the query string or the password."""
    caplog.set_level(logging.DEBUG)
    fetcher = loopback_fetcher(server, max_redirects=1, read_timeout_seconds=0.3)
    errors: list[TranscribeError] = []
    for path in ("/status/404", "/status/500", "/redirect/3", "/stall", "/to?target=http%3A%2F%2F10.0.0.1%2F"):
        uri = server.url(path).replace("://", "://user:pa55word@") + ("&" if "?" in path else "?") + f"token={SECRET}"
        with pytest.raises(TranscribeError) as caught:
            await fetch(fetcher, uri)
        errors.append(caught.value)
    assert await fetch(fetcher, server.url(f"/audio.wav?token={SECRET}")) == WAV
    assert {type(error) for error in errors} == {UriNotFound, UriUnavailable, UriForbidden, UriTimeout}
    for error in errors:
        text = error.message + repr(error.metadata)
        assert SECRET not in text
        assert "pa55word" not in text
        assert "127.0.0.1" not in text
    assert caplog.records
    assert not [
        record for record in caplog.records if SECRET in record.getMessage() or "pa55word" in record.getMessage()
    ]
    assert not [record for record in caplog.records if record.levelno >= logging.INFO and "fetch" in record.name]
