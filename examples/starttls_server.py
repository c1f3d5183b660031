"""A STARTTLS line-protocol server on portastreams: plain text, then TLS via start_tls().

Usage: python examples/starttls_server.py --backend trio --certfile cert.pem
       --keyfile key.pem [--client-cafile ca.pem] [--host 127.0.0.1] [--port 8025]

The dialogue is the smallest part of SMTP's (RFC 5321, STARTTLS from RFC
3207) that upgrades to TLS, so that tools that speak SMTP STARTTLS -- such as
``openssl s_client -starttls smtp`` -- can talk to it::

    S: 220 localhost portastreams STARTTLS example
    C: EHLO client.example
    S: 250-localhost hello client.example
    S: 250 STARTTLS
    C: STARTTLS
    S: 220 Ready to start TLS
       ... TLS handshake; from here on, everything is encrypted ...
    C: EHLO client.example
    S: 250 localhost hello client.example, over TLSv1.3
    C: ECHO some text
    S: 250 some text
    C: QUIT
    S: 221 Bye

ECHO only works over TLS (before, the answer is 530). A client that sends
anything after STARTTLS before the handshake is refused (501), as bytes read
in plain text must never pass for encrypted ones. With --client-cafile,
clients must present a certificate signed by an authority in that file, and
the EHLO reply names it. Each connection's TLS version, or why its handshake
failed, is printed. Ctrl+C stops the server.
"""

from __future__ import annotations

import argparse
import functools
import signal
import ssl

import anyio
import anyio.abc

import portastreams

# anyio.run() arguments for each backend name.
BACKENDS = {
    "asyncio": ("asyncio", {}),
    "uvloop": ("asyncio", {"use_uvloop": True}),
    "trio": ("trio", {}),
}


def client_name(writer: portastreams.StreamWriter) -> str | None:
    """The first name in the client's certificate, if it presented one."""
    certificate = writer.get_extra_info("peercert")
    if not certificate:
        return None
    for _kind, name in certificate.get("subjectAltName", ()):
        return str(name)
    return None


def address(sockname: object) -> str:
    if isinstance(sockname, tuple):
        return f"{sockname[0]}:{sockname[1]}"
    return str(sockname)


async def sent_more(reader: portastreams.StreamReader) -> bool:
    """True if the client has sent more than its command already.

    A read with a deadline that has already passed: it returns at once if
    bytes are buffered, and is otherwise cancelled, which takes nothing from
    the stream. (Bytes still on their way are no danger: they reach the TLS
    handshake, which fails on them.)
    """
    with anyio.move_on_after(0):
        return bool(await reader.read(1))
    return False


async def handle(
    reader: portastreams.StreamReader,
    writer: portastreams.StreamWriter,
    context: ssl.SSLContext,
    name: str,
) -> None:
    peer = address(writer.get_extra_info("peername"))
    try:
        await converse(reader, writer, context, name, peer)
    except OSError as exc:  # reset, broken pipe, a TLS error after the handshake
        print(f"{peer}: connection lost: {exc!r}", flush=True)


async def converse(
    reader: portastreams.StreamReader,
    writer: portastreams.StreamWriter,
    context: ssl.SSLContext,
    name: str,
    peer: str,
) -> None:
    """One client's dialogue, until QUIT or the end of the connection."""

    def reply(code: int, *lines: str) -> None:
        # "250-first", "250-second", "250 last": a dash means more follows.
        for index, line in enumerate(lines):
            separator = " " if index == len(lines) - 1 else "-"
            writer.write(f"{code}{separator}{line}\r\n".encode())

    reply(220, f"{name} portastreams STARTTLS example")
    encrypted = False
    while True:
        try:
            line = await reader.readline()
        except ValueError:  # longer than the reader's limit: dropped
            reply(500, "Line too long")
            continue
        if not line:
            return  # the client closed without QUIT
        verb, _, argument = (
            line.rstrip(b"\r\n").decode("utf-8", "replace").partition(" ")
        )
        verb = verb.upper()
        if verb in ("EHLO", "HELO"):
            if not encrypted:
                reply(250, f"{name} hello {argument}", "STARTTLS")
            else:
                version = writer.get_extra_info("ssl_object").version()
                who = client_name(writer)
                suffix = f" as {who}" if who else ""
                reply(250, f"{name} hello {argument}, over {version}{suffix}")
        elif verb == "STARTTLS":
            if encrypted:
                reply(503, "Already using TLS")
                continue
            if await sent_more(reader):
                # Plain text after STARTTLS would be read as if it had come
                # over TLS (the reader keeps what it has buffered): refuse.
                reply(501, "Nothing may follow STARTTLS before the handshake")
                return
            # The client reads this line in plain text, then starts the
            # handshake; start_tls() sends the line before it takes over.
            reply(220, "Ready to start TLS")
            try:
                await writer.start_tls(context)
            except OSError as exc:  # ssl.SSLError, or the client left
                print(f"{peer}: TLS handshake failed: {exc!r}", flush=True)
                return
            encrypted = True
            version = writer.get_extra_info("ssl_object").version()
            who = client_name(writer) or "no client certificate"
            print(f"{peer}: {version}, {who}", flush=True)
        elif verb == "ECHO":
            if encrypted:
                reply(250, argument)
            else:
                reply(530, "Must issue a STARTTLS command first")
        elif verb == "NOOP":
            reply(250, "OK")
        elif verb == "QUIT":
            reply(221, "Bye")
            return  # the server flushes and closes (over TLS, with close_notify)
        else:
            reply(500, "Unknown command")
        await writer.drain()


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


async def main(host: str, port: int, context: ssl.SSLContext, name: str) -> None:
    handler = functools.partial(handle, context=context, name=name)
    server = await portastreams.start_server(handler, host, port)
    async with server, anyio.create_task_group() as tg:
        await tg.start(close_on_ctrl_c, server)
        print(
            f"Serving STARTTLS on {address(server.sockets[0].getsockname())}",
            flush=True,
        )
        await server.serve_forever()
        tg.cancel_scope.cancel()
    print("stopped", flush=True)


def server_context(
    certfile: str, keyfile: str | None, client_cafile: str | None
) -> ssl.SSLContext:
    """The server's certificate; with ``client_cafile``, client certificates
    signed by its authorities are required."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    if client_cafile:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_cafile)
    return context


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=BACKENDS, default="asyncio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--certfile", required=True, help="certificate chain (PEM)")
    parser.add_argument("--keyfile", help="private key (PEM), if not in --certfile")
    parser.add_argument(
        "--client-cafile", help="require client certificates signed by these CAs"
    )
    parser.add_argument("--name", default="localhost", help="the name it greets with")
    args = parser.parse_args()

    context = server_context(args.certfile, args.keyfile, args.client_cafile)
    backend, options = BACKENDS[args.backend]
    anyio.run(
        main,
        args.host,
        args.port,
        context,
        args.name,
        backend=backend,
        backend_options=options,
    )
