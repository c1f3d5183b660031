"""A STARTTLS line-protocol client on portastreams: plain text, then TLS via start_tls().

Usage: python examples/starttls_client.py --backend trio [--host 127.0.0.1]
       [--port 8025] [--cafile ca.pem] [--server-hostname localhost]
       [--cert client.pem] MESSAGE [MESSAGE ...]

Talks to examples/starttls_server.py (see there for the dialogue, a minimal
SMTP): greets it, asks for STARTTLS, upgrades the connection with
``writer.start_tls()`` -- verifying the server's certificate and name -- then
sends each MESSAGE with ECHO, and QUITs. It prints the whole dialogue, ``C:``
for what it sends and ``S:`` for what it receives.
"""

from __future__ import annotations

import argparse
import ssl
import sys
from collections.abc import Sequence

import anyio

import portastreams

# anyio.run() arguments for each backend name.
BACKENDS = {
    "asyncio": ("asyncio", {}),
    "uvloop": ("asyncio", {"use_uvloop": True}),
    "trio": ("trio", {}),
}


class ProtocolError(Exception):
    """The server answered something this client did not expect."""


class Session:
    """One connection's dialogue: commands out, numbered replies in."""

    def __init__(
        self, reader: portastreams.StreamReader, writer: portastreams.StreamWriter
    ) -> None:
        self.reader = reader
        self.writer = writer

    async def reply(self, expected: int) -> list[str]:
        """Read one reply (one line, or several: ``250-...`` continues it) and
        return its texts; ``ProtocolError`` unless its code is ``expected``."""
        texts = []
        while True:
            line = await self.reader.readline()
            if not line:
                raise ProtocolError("the server closed the connection")
            text = line.rstrip(b"\r\n").decode("utf-8", "replace")
            print(f"S: {text}")
            code, separator, rest = text[:3], text[3:4], text[4:]
            if code != str(expected):
                raise ProtocolError(f"expected {expected}, got {text!r}")
            texts.append(rest)
            if separator != "-":
                return texts

    async def command(self, line: str, expected: int) -> list[str]:
        print(f"C: {line}")
        self.writer.write(line.encode() + b"\r\n")
        return await self.reply(expected)

    async def starttls(self, context: ssl.SSLContext, server_hostname: str) -> None:
        """Ask for TLS and upgrade this connection; the reader and writer carry on."""
        await self.command("STARTTLS", 220)
        # Every plain-text byte the server sent has been read (the 220 was its
        # last), so the next bytes on the wire are the TLS handshake.
        await self.writer.start_tls(context, server_hostname=server_hostname)
        ssl_object = self.writer.get_extra_info("ssl_object")
        print(f"-- TLS: {ssl_object.version()}, {ssl_object.cipher()[0]} --")


async def run_session(
    host: str,
    port: int,
    messages: Sequence[str],
    context: ssl.SSLContext,
    server_hostname: str,
    hello: str = "client.example",
) -> list[str]:
    """The whole dialogue; returns the server's answers to the messages."""
    reader, writer = await portastreams.open_connection(host, port)
    session = Session(reader, writer)
    try:
        await session.reply(220)  # the greeting
        capabilities = await session.command(f"EHLO {hello}", 250)
        if "STARTTLS" not in capabilities[1:]:
            raise ProtocolError("the server does not offer STARTTLS")
        await session.starttls(context, server_hostname)
        await session.command(f"EHLO {hello}", 250)  # again: a new session
        answers = []
        for message in messages:
            (answer,) = await session.command(f"ECHO {message}", 250)
            answers.append(answer)
        await session.command("QUIT", 221)
    finally:
        writer.close()
        await writer.wait_closed()
    return answers


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=BACKENDS, default="asyncio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--cafile", help="trust only the authorities in this file")
    parser.add_argument(
        "--server-hostname",
        default="localhost",
        help="the name the server's certificate must carry (default: localhost)",
    )
    parser.add_argument("--cert", help="present this client certificate (PEM, key too)")
    parser.add_argument("messages", metavar="MESSAGE", nargs="+")
    args = parser.parse_args(argv)

    context = ssl.create_default_context(cafile=args.cafile)
    if args.cert:
        context.load_cert_chain(args.cert)
    backend, options = BACKENDS[args.backend]
    try:
        anyio.run(
            run_session,
            args.host,
            args.port,
            args.messages,
            context,
            args.server_hostname,
            backend=backend,
            backend_options=options,
        )
    except (OSError, ProtocolError) as exc:
        print(f"starttls_client: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
