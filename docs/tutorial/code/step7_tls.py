"""Step 7: TLS, with a throwaway certificate authority made by trustme."""

import ssl

import anyio

import portastreams


async def handle_hello(
    reader: portastreams.StreamReader, writer: portastreams.StreamWriter
) -> None:
    name = await reader.readline()
    version = writer.get_extra_info("ssl_object").version()
    writer.write(b"Hello, " + name.strip() + f", over {version}\n".encode())


async def main(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext, port: int = 0
) -> bytes:
    server = await portastreams.start_server(
        handle_hello, "127.0.0.1", port, ssl=server_context
    )
    port = server.sockets[0].getsockname()[1]
    async with server:
        reader, writer = await portastreams.open_connection(
            "127.0.0.1", port, ssl=client_context, server_hostname="localhost"
        )
        certificate = writer.get_extra_info("peercert")  # checked, as ssl=True would
        writer.write(b"Alice\n")
        reply = await reader.readline()
        writer.close()
        await writer.wait_closed()
    print(f"Received {reply!r} from {certificate['subjectAltName']}")
    return reply


def make_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for "localhost", and a client
    context that trusts it (``pip install trustme``; tests only)."""
    import trustme

    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    return server_context, client_context


if __name__ == "__main__":
    anyio.run(main, *make_contexts())
