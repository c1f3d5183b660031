"""HTTP/1.1 client on portastreams, parsing with h11: keep-alive, chunked bodies, HTTPS.

Usage: python examples/http_client.py --backend trio [--include] [--cafile ca.pem]
       [--header 'Name: value'] URL [URL ...]

GETs each URL in turn and writes the response bodies to stdout, one after the
other (with --include, each after its status line and headers, as ``curl -i``
does). URLs with the same scheme, host and port share one connection for as
long as the server keeps it open (HTTP/1.1 keep-alive). Bodies framed by
Content-Length and by chunked transfer encoding both work: h11 (the sans-I/O
HTTP library, ``pip install h11``) parses the bytes, portastreams moves them.
https:// URLs verify the server's certificate and host name, against the
system's certificate authorities or, with --cafile, against that file's only.
"""

from __future__ import annotations

import argparse
import ssl
import sys
import urllib.parse
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import anyio
import h11

import portastreams

# anyio.run() arguments for each backend name.
BACKENDS = {
    "asyncio": ("asyncio", {}),
    "uvloop": ("asyncio", {"use_uvloop": True}),
    "trio": ("trio", {}),
}

#: The most bytes one read asks the connection for.
RECEIVE_SIZE = 65536
DEFAULT_PORTS = {"http": 80, "https": 443}
USER_AGENT = b"portastreams-example/1.0 (h11)"


@dataclass(frozen=True)
class Origin:
    """Where requests go: one connection serves one origin."""

    scheme: str
    host: str
    port: int

    @property
    def host_header(self) -> str:
        """The ``Host`` header: the port only when it is not the default one."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == DEFAULT_PORTS[self.scheme]:
            return host
        return f"{host}:{self.port}"


def split_url(url: str) -> tuple[Origin, str]:
    """``https://example.com:8443/a?b`` -> (Origin("https", "example.com", 8443), "/a?b")."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"not an http:// or https:// URL: {url!r}")
    origin = Origin(
        parts.scheme, parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme]
    )
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return origin, target


@dataclass
class Response:
    """A whole response, as :meth:`HTTPConnection.request` returns it."""

    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]  # names in lower case, as h11 gives them
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        """The value of header ``name`` (lower case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


class HTTPConnection:
    """An HTTP/1.1 connection to one origin; requests go one after the other.

    h11 keeps the protocol's state: it turns events (a request, body data,
    the end of a message) into bytes to write, and the bytes read into events
    (a response head, body data, the end of the response), whichever framing
    the server chose. The connection stays open between requests while both
    sides agree (:attr:`reusable`).
    """

    def __init__(
        self,
        origin: Origin,
        reader: portastreams.StreamReader,
        writer: portastreams.StreamWriter,
    ) -> None:
        self.origin = origin
        self._reader = reader
        self._writer = writer
        self._protocol = h11.Connection(h11.CLIENT)

    @classmethod
    async def open(
        cls, origin: Origin, ssl_context: ssl.SSLContext | None = None
    ) -> HTTPConnection:
        """Connect to ``origin``; https uses ``ssl_context`` or the default one.

        The certificate must be valid for ``origin.host`` (``server_hostname``
        defaults to the host), unless the context says otherwise.
        """
        tls: ssl.SSLContext | bool | None = None
        if origin.scheme == "https":
            tls = ssl_context if ssl_context is not None else True
        reader, writer = await portastreams.open_connection(
            origin.host, origin.port, ssl=tls
        )
        return cls(origin, reader, writer)

    @property
    def reusable(self) -> bool:
        """True when another request may be sent on this connection."""
        return self._protocol.our_state is h11.IDLE

    async def request(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> Response:
        """Send a request and return the whole response, body included."""
        await self.send_request(method, target, headers, body)
        head = await self.receive_head()
        chunks = [chunk async for chunk in self.receive_body()]
        return Response(
            head.status_code, head.reason, list(head.headers), b"".join(chunks)
        )

    async def send_request(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> None:
        """Send a whole request: head, body (with a Content-Length), end."""
        all_headers = [
            ("Host", self.origin.host_header),
            ("User-Agent", USER_AGENT.decode()),
            *headers,
        ]
        if body or method in ("POST", "PUT"):
            all_headers.append(("Content-Length", str(len(body))))
        self._send(h11.Request(method=method, target=target, headers=all_headers))
        if body:
            self._send(h11.Data(data=body))
        self._send(h11.EndOfMessage())
        await self._writer.drain()

    async def receive_head(self) -> h11.Response:
        """Read up to the end of the response's headers (skipping 1xx responses)."""
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Response):
                return event
            if not isinstance(event, h11.InformationalResponse):
                raise h11.RemoteProtocolError(f"expected a response, got {event!r}")

    async def receive_body(self) -> AsyncIterator[bytes]:
        """Yield the body's bytes as they arrive, up to the end of the response.

        Afterwards the connection is ready for the next request, unless the
        server said it would close it (``Connection: close``).
        """
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                raise h11.RemoteProtocolError(f"unexpected {event!r} in a body")
        if self._protocol.states == {h11.CLIENT: h11.DONE, h11.SERVER: h11.DONE}:
            self._protocol.start_next_cycle()  # keep-alive: ready for the next one

    async def close(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()

    def _send(self, event: h11.Event) -> None:
        data = self._protocol.send(event)
        if data:
            self._writer.write(data)  # queued in order; drain() waits for room

    async def _next_event(self) -> h11.Event:
        """The next event from the server, reading as much as h11 needs for it.

        Only called while a response is due, so h11 never answers PAUSED.
        """
        while True:
            event = self._protocol.next_event()
            if isinstance(event, h11.ConnectionClosed):
                raise ConnectionResetError("the server closed the connection")
            if isinstance(event, h11.Event):
                return event
            assert event is h11.NEED_DATA, event
            data = await self._reader.read(RECEIVE_SIZE)
            if not data and self._nothing_received():
                # What a server closing an idle kept-alive connection looks like.
                raise ConnectionResetError("the server closed without responding")
            # b"" at the end of the stream tells h11 that the server closed.
            self._protocol.receive_data(data)

    def _nothing_received(self) -> bool:
        """True if no byte of the response to the last request has come."""
        received, _ = self._protocol.trailing_data
        return self._protocol.their_state is h11.SEND_RESPONSE and not received


def write_head(out: BinaryIO, head: h11.Response) -> None:
    """The status line and headers, as they came (``curl -i``)."""
    out.write(b"HTTP/%s %d %s\r\n" % (head.http_version, head.status_code, head.reason))
    for name, value in head.headers.raw_items():
        out.write(name + b": " + value + b"\r\n")
    out.write(b"\r\n")


async def fetch(
    urls: Sequence[str],
    out: BinaryIO,
    *,
    include: bool = False,
    headers: Sequence[tuple[str, str]] = (),
    ssl_context: ssl.SSLContext | None = None,
) -> int:
    """GET every URL in turn, writing the bodies to ``out``; return how many
    connections were opened.

    Writes to ``out`` block (a file or a pipe); this client does nothing else
    meanwhile, so that is all the flow control it needs: while it is not
    reading, the server's sending waits.
    """
    connection: HTTPConnection | None = None
    opened = 0
    try:
        for url in urls:
            origin, target = split_url(url)
            if connection is not None and (
                connection.origin != origin or not connection.reusable
            ):
                await connection.close()
                connection = None
            reused = connection is not None
            if connection is None:
                connection = await HTTPConnection.open(origin, ssl_context)
                opened += 1
            try:
                await connection.send_request("GET", target, headers)
                head = await connection.receive_head()
            except ConnectionError:
                if not reused:
                    raise
                # The server closed the idle connection as we reused it (it
                # may, at any time): send the request again on a new one.
                await connection.close()
                connection = await HTTPConnection.open(origin, ssl_context)
                opened += 1
                await connection.send_request("GET", target, headers)
                head = await connection.receive_head()
            if include:
                write_head(out, head)
            async for chunk in connection.receive_body():
                out.write(chunk)
            out.flush()
    finally:
        if connection is not None:
            await connection.close()
    return opened


def parse_header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=BACKENDS, default="asyncio")
    parser.add_argument(
        "-i", "--include", action="store_true", help="write status and headers too"
    )
    parser.add_argument(
        "-H", "--header", action="append", type=parse_header, default=[]
    )
    parser.add_argument(
        "--cafile", help="trust the certificate authorities in this PEM file only"
    )
    parser.add_argument("urls", metavar="URL", nargs="+")
    args = parser.parse_args(argv)

    context = None
    if args.cafile:
        context = ssl.create_default_context(cafile=args.cafile)
    backend, options = BACKENDS[args.backend]
    try:
        anyio.run(
            lambda: fetch(
                args.urls,
                sys.stdout.buffer,
                include=args.include,
                headers=args.header,
                ssl_context=context,
            ),
            backend=backend,
            backend_options=options,
        )
    except (OSError, ValueError, h11.ProtocolError) as exc:
        print(f"http_client: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
