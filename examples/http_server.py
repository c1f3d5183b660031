"""A small HTTP/1.1 server on portastreams, parsing with h11: files, keep-alive, echo.

Usage: python examples/http_server.py --backend trio [--host 127.0.0.1]
       [--port 8080] [--root DIR]

GET and HEAD serve the files under --root (default: the current directory),
with a Content-Length. POST /echo sends the request body back as it arrives,
in chunked transfer encoding. Each connection stays open for further requests
(HTTP/1.1 keep-alive) until the client closes it, sends ``Connection: close``,
or stays idle for IDLE_TIMEOUT seconds. h11 (the sans-I/O HTTP library, ``pip
install h11``) parses and frames the messages; portastreams moves the bytes.
Ctrl+C stops the server.
"""

from __future__ import annotations

import argparse
import contextlib
import email.utils
import functools
import http
import mimetypes
import os
import signal
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

import anyio
import anyio.abc
import h11

import portastreams

# anyio.run() arguments for each backend name.
BACKENDS = {
    "asyncio": ("asyncio", {}),
    "uvloop": ("asyncio", {"use_uvloop": True}),
    "trio": ("trio", {}),
}

#: The most bytes one read asks the connection for, and one file read's size.
CHUNK_SIZE = 65536
#: Seconds a kept-alive connection may wait for its next request.
IDLE_TIMEOUT = 60.0
SERVER = b"portastreams-example/1.0 (h11)"


class Exchange:
    """One connection's requests and responses, one after the other."""

    def __init__(
        self,
        reader: portastreams.StreamReader,
        writer: portastreams.StreamWriter,
        root: Path,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.root = root
        self.protocol = h11.Connection(h11.SERVER)

    async def next_event(self) -> h11.Event:
        """The next event from the client, reading as much as h11 needs for it.

        Only called while a request is expected or being read, so h11 never
        answers PAUSED (that is for a client that sends its next request
        before the current response is over).
        """
        while True:
            event = self.protocol.next_event()
            if isinstance(event, h11.Event):
                return event
            assert event is h11.NEED_DATA, event
            # b"" at the end of the stream tells h11 that the client closed.
            self.protocol.receive_data(await self.reader.read(CHUNK_SIZE))

    def send(self, event: h11.Event) -> None:
        data = self.protocol.send(event)
        if data:
            self.writer.write(data)

    def start_response(
        self, status: int, headers: Sequence[tuple[bytes, bytes]] = ()
    ) -> None:
        base = [
            (b"Server", SERVER),
            (b"Date", email.utils.formatdate(usegmt=True).encode()),
        ]
        reason = http.HTTPStatus(status).phrase.encode()
        self.send(
            h11.Response(status_code=status, headers=[*base, *headers], reason=reason)
        )

    async def send_simple(
        self, status: int, text: str, headers: Sequence[tuple[bytes, bytes]] = ()
    ) -> None:
        """A short text/plain response."""
        body = text.encode() + b"\n"
        self.start_response(
            status,
            [
                (b"Content-Type", b"text/plain; charset=utf-8"),
                (b"Content-Length", str(len(body)).encode()),
                *headers,
            ],
        )
        self.send(h11.Data(data=body))
        self.send(h11.EndOfMessage())
        await self.writer.drain()

    async def serve(self) -> None:
        """Answer requests until the connection ends."""
        while True:
            with anyio.move_on_after(IDLE_TIMEOUT):
                # Cancelling a read consumes nothing, so a timeout here is safe.
                request = await self.next_event()
            if not isinstance(request, h11.Request):
                return  # the client closed (ConnectionClosed), or stayed idle
            await self.respond(request)
            # Skip what is left of the request's body, then start over.
            while self.protocol.their_state is h11.SEND_BODY:
                await self.next_event()
            if self.protocol.states != {h11.CLIENT: h11.DONE, h11.SERVER: h11.DONE}:
                return  # Connection: close, from either side
            self.protocol.start_next_cycle()

    async def respond(self, request: h11.Request) -> None:
        path = urllib.parse.unquote(request.target.decode("ascii").split("?")[0])
        if path == "/echo":
            if request.method != b"POST":
                await self.send_simple(405, "use POST", [(b"Allow", b"POST")])
            else:
                await self.echo(request)
        elif request.method in (b"GET", b"HEAD"):
            await self.send_file(path, head_only=request.method == b"HEAD")
        else:
            await self.send_simple(405, "use GET or HEAD", [(b"Allow", b"GET, HEAD")])

    async def send_file(self, path: str, *, head_only: bool) -> None:
        file = self.resolve(path)
        if file is None:
            await self.send_simple(404, "not found")
            return
        async with await anyio.open_file(file, "rb") as content:
            size = os.fstat(content.wrapped.fileno()).st_size
            kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
            self.start_response(
                200,
                [
                    (b"Content-Type", kind.encode()),
                    (b"Content-Length", str(size).encode()),
                ],
            )
            remaining = 0 if head_only else size
            while remaining:
                chunk = await content.read(min(CHUNK_SIZE, remaining))
                if not chunk:
                    break  # the file shrank: h11 refuses to end the message short
                remaining -= len(chunk)
                self.send(h11.Data(data=chunk))
                # drain() after each chunk: at most ~64 KiB waits in memory,
                # however big the file and however slow the client.
                await self.writer.drain()
        self.send(h11.EndOfMessage())
        await self.writer.drain()

    def resolve(self, path: str) -> Path | None:
        """The file under the root that ``path`` names, or None."""
        if not path.startswith("/"):
            return None
        file = (self.root / path.lstrip("/")).resolve()
        if self.root not in file.parents or not file.is_file():
            return None
        return file

    async def echo(self, request: h11.Request) -> None:
        """Send the request's body back as it arrives, in chunks.

        No Content-Length: h11 frames the body with chunked transfer encoding
        for HTTP/1.1 clients (and by closing the connection for HTTP/1.0 ones).
        """
        if self.protocol.they_are_waiting_for_100_continue:
            self.send(
                h11.InformationalResponse(
                    status_code=100, headers=[], reason=b"Continue"
                )
            )
        kind = dict(request.headers).get(b"content-type", b"application/octet-stream")
        self.start_response(200, [(b"Content-Type", kind)])
        while True:
            event = await self.next_event()
            if isinstance(event, h11.EndOfMessage):
                break
            if isinstance(event, h11.Data):
                self.send(h11.Data(data=event.data))
                await self.writer.drain()
        self.send(h11.EndOfMessage())
        await self.writer.drain()


async def handle(
    reader: portastreams.StreamReader, writer: portastreams.StreamWriter, root: Path
) -> None:
    exchange = Exchange(reader, writer, root)
    # A client that leaves in the middle (reset, broken pipe): nobody to tell.
    with contextlib.suppress(ConnectionError):
        try:
            await exchange.serve()
        except h11.RemoteProtocolError as exc:
            # A malformed request: say so if a response can still be sent.
            if exchange.protocol.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                await exchange.send_simple(exc.error_status_hint, str(exc))
    # Returning closes the connection (the server flushes it first).


async def close_on_ctrl_c(
    server: portastreams.Server,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for _ in signals:
            server.close()
            return


async def main(host: str, port: int, root: Path) -> None:
    handler = functools.partial(handle, root=root)
    server = await portastreams.start_server(handler, host, port)
    async with server, anyio.create_task_group() as tg:
        await tg.start(close_on_ctrl_c, server)
        host, port = server.sockets[0].getsockname()[:2]
        print(f"Serving HTTP on http://{host}:{port}/ from {root}", flush=True)
        await server.serve_forever()
        tg.cancel_scope.cancel()
    print("stopped", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=BACKENDS, default="asyncio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--root", type=Path, default=Path())
    args = parser.parse_args()

    backend, options = BACKENDS[args.backend]
    anyio.run(
        main,
        args.host,
        args.port,
        args.root.resolve(),
        backend=backend,
        backend_options=options,
    )
