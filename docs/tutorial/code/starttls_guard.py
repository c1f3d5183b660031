"""STARTTLS and the bytes that come too early: refuse plain text sent behind STARTTLS."""

import functools
import ssl

import anyio

import portastreams

from step7_starttls import handle_starttls
from step7_tls import make_contexts


async def sent_more(reader: portastreams.StreamReader) -> bool:
    """True if the peer has sent more than what was read so far.

    The deadline has passed before the read starts: it returns at once if
    bytes are buffered, and is cancelled otherwise, taking nothing.
    """
    with anyio.move_on_after(0):
        return bool(await reader.read(1))
    return False


async def handle_guarded(
    reader: portastreams.StreamReader,
    writer: portastreams.StreamWriter,
    context: ssl.SSLContext,
) -> None:
    writer.write(b"READY\n")
    if await reader.readline() != b"STARTTLS\n":
        writer.write(b"ERR say STARTTLS first\n")
        return
    if await sent_more(reader):
        writer.write(b"ERR nothing may follow STARTTLS\n")
        return
    writer.write(b"GO AHEAD\n")
    await writer.start_tls(context)
    name = await reader.readline()
    writer.write(b"Hello, " + name.strip() + b", privately\n")


async def ask(port: int, context: ssl.SSLContext, request: bytes) -> bytes:
    """Send ``request`` in plain text, upgrade if the server agrees, then say
    "Carol"; return the server's last line."""
    reader, writer = await portastreams.open_connection("127.0.0.1", port)
    await reader.readline()  # b"READY\n"
    writer.write(request)
    answer = await reader.readline()
    if answer == b"GO AHEAD\n":
        await writer.start_tls(context, server_hostname="localhost")
        writer.write(b"Carol\n")
        answer = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return answer


async def main(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext, port: int = 0
) -> list[bytes]:
    answers = []
    for handler in (handle_starttls, handle_guarded):  # step 7's server, then this one
        server = await portastreams.start_server(
            functools.partial(handler, context=server_context), "127.0.0.1", port
        )
        server_port = server.sockets[0].getsockname()[1]
        async with server:
            for request in (b"STARTTLS\n", b"STARTTLS\nMallory\n"):
                answer = await ask(server_port, client_context, request)
                print(f"{handler.__name__}: {request!r} -> {answer!r}")
                answers.append(answer)
    return answers


if __name__ == "__main__":
    anyio.run(main, *make_contexts())
