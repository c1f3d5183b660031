"""Get HTTP headers: print the response headers of a HEAD request (an example of asyncio's documentation).

Usage: python examples/http_headers.py --backend trio http://example.com/path/page.html
or, with HTTPS: python examples/http_headers.py https://example.com/path/page.html

The port of the URL is honoured; https verifies the server's certificate (the
default context of ssl.create_default_context(), which reads SSL_CERT_FILE).
"""

import argparse
import urllib.parse

import anyio

import portastreams

# anyio.run() arguments for each backend name.
BACKENDS = {
    "asyncio": ("asyncio", {}),
    "uvloop": ("asyncio", {"use_uvloop": True}),
    "trio": ("trio", {}),
}


async def print_http_headers(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        connect = portastreams.open_connection(
            parts.hostname, parts.port or 443, ssl=True
        )
    else:
        connect = portastreams.open_connection(parts.hostname, parts.port or 80)
    reader, writer = await connect
    query = ("HEAD {path} HTTP/1.0\r\nHost: {hostname}\r\n\r\n").format(
        path=parts.path or "/", hostname=parts.hostname
    )
    writer.write(query.encode("latin-1"))
    while True:
        line = await reader.readline()
        if not line:
            break
        text = line.decode("latin1").rstrip()
        if text:
            print(f"HTTP header> {text}")

    # Ignore the body, close the socket
    writer.close()
    await writer.wait_closed()


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--backend", choices=BACKENDS, default="asyncio")
parser.add_argument("url")
args = parser.parse_args()

backend, options = BACKENDS[args.backend]
anyio.run(print_http_headers, args.url, backend=backend, backend_options=options)
