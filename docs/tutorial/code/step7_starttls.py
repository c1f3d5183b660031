"""Step 7, continued: upgrading a plain connection to TLS with start_tls()."""

import functools
import ssl

import anyio

import portastreams

from step7_tls import make_contexts


async def handle_starttls(
    reader: portastreams.StreamReader,
    writer: portastreams.StreamWriter,
    context: ssl.SSLContext,
) -> None:
    writer.write(b"READY\n")
    if await reader.readline() != b"STARTTLS\n":
        writer.write(b"ERR say STARTTLS first\n")
        return
    writer.write(b"GO AHEAD\n")  # the last plain-text line: start_tls() sends it first
    await writer.start_tls(context)
    name = await reader.readline()  # the same reader, now decrypting
    writer.write(b"Hello, " + name.strip() + b", privately\n")


async def main(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext, port: int = 0
) -> bytes:
    handler = functools.partial(handle_starttls, context=server_context)
    server = await portastreams.start_server(handler, "127.0.0.1", port)
    port = server.sockets[0].getsockname()[1]
    async with server:
        reader, writer = await portastreams.open_connection("127.0.0.1", port)
        await reader.readline()  # b"READY\n"
        writer.write(b"STARTTLS\n")
        if await reader.readline() != b"GO AHEAD\n":
            raise ConnectionError("the server does not speak STARTTLS")
        await writer.start_tls(client_context, server_hostname="localhost")
        writer.write(b"Bob\n")
        reply = await reader.readline()
        cipher = writer.get_extra_info("cipher")
        writer.close()
        await writer.wait_closed()
    print(f"Received {reply!r}, encrypted with {cipher[0]}")
    return reply


if __name__ == "__main__":
    anyio.run(main, *make_contexts())
