"""The HTTP client example (``examples/http_client.py``) against a real nginx.

nginx runs from its own configuration in a temporary directory (its logs, pid
file and temporary paths there too, in the foreground, one process, so it
works without root) on free ports, plain and TLS, serving files of several
MiB. Its access log records, for every request, the connection's serial
number and how many requests that connection has carried: that is how the
tests see keep-alive from the server's side. Responses come with a
Content-Length, or chunked: nginx's SSI filter (on, over files without SSI
commands) and its gzip filter drop the Content-Length and send the body in
chunks, the first unchanged, the second compressed.
"""

from __future__ import annotations

import gzip
import importlib
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest
from programs import require_module, require_program
from server_process import accepts, free_port, program_version, server_process
from subprocesses import EXAMPLES, REPO, child_env
from tls_certificates import Certificates, make_certificates

pytestmark = pytest.mark.anyio

#: Deadline for each test's network exchanges.
TIMEOUT = 30.0

NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 64; }}
http {{
    log_format connections '$connection $connection_requests "$request" $status $body_bytes_sent';
    access_log {dir}/access.log connections;
    client_body_temp_path {dir}/temp/body;
    proxy_temp_path {dir}/temp/proxy;
    fastcgi_temp_path {dir}/temp/fastcgi;
    uwsgi_temp_path {dir}/temp/uwsgi;
    scgi_temp_path {dir}/temp/scgi;
    types {{ text/html html; text/plain txt; application/octet-stream bin; }}
    default_type application/octet-stream;
    keepalive_requests 1000;
    server {{
        listen 127.0.0.1:{port};
        listen 127.0.0.1:{tls_port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        root {dir}/www;
        # Chunked: SSI leaves these files as they are but drops the length.
        location /ssi/ {{ alias {dir}/www/; ssi on; ssi_types *; }}
        # Chunked and compressed.
        location /gzip/ {{ alias {dir}/www/; gzip on; gzip_types *; gzip_min_length 0; }}
        # The server ends the connection after two requests.
        location /few/ {{ alias {dir}/www/; keepalive_requests 2; }}
        # The server closes connections idle for more than 200 ms.
        location /brief/ {{ alias {dir}/www/; keepalive_timeout 200ms; }}
    }}
}}
"""


def _text(size: int, seed: int) -> bytes:
    """``size`` bytes of numbered lines (compressible, with no SSI command in them)."""
    lines = (
        b"%08d %016x portastreams\n" % (i, (i * 2654435761 + seed) % 2**64)
        for i in range(size // 40 + 1)
    )
    return b"".join(lines)[:size]


#: The files nginx serves: name -> content.
FILES = {
    "big.bin": (bytes(range(256)) * 4096 + b"\x00\xff") * 4,  # 4 MiB + 8
    "page.html": _text(3 * 2**20 + 17, 1),  # ~3 MiB
    "small.txt": b"hello, nginx\n",
    "empty.txt": b"",
}


@dataclass(frozen=True)
class Nginx:
    directory: Path
    port: int
    tls_port: int
    version: str
    certificates: Certificates

    def url(self, path: str, *, tls: bool = False) -> str:
        if tls:
            return f"https://localhost:{self.tls_port}{path}"
        return f"http://127.0.0.1:{self.port}{path}"

    def connections(
        self, marker: str, expected: int
    ) -> list[tuple[int, int, str, int]]:
        """The access log's lines for requests whose target contains ``marker``:
        ``(connection, request number on it, request line, status)``.

        Waits (a little) for ``expected`` lines: nginx logs a request just
        after it has sent the response.
        """
        deadline = time.monotonic() + 10
        while True:
            lines = [
                line
                for line in (self.directory / "access.log").read_text().splitlines()
                if marker in line
            ]
            if len(lines) >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        entries = []
        for line in lines:
            connection, number, rest = line.split(" ", 2)
            request, status, _ = rest.rsplit(" ", 2)
            entries.append(
                (int(connection), int(number), request.strip('"'), int(status))
            )
        return entries


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    program = require_program("nginx", "nginx")
    directory = tmp_path_factory.mktemp("nginx")
    certificates = make_certificates(directory)
    (directory / "temp").mkdir()
    www = directory / "www"
    www.mkdir()
    for name, content in FILES.items():
        (www / name).write_bytes(content)
    port = free_port()
    tls_port = free_port()
    while tls_port == port:
        tls_port = free_port()
    config = directory / "nginx.conf"
    config.write_text(
        NGINX_CONF.format(
            dir=directory,
            port=port,
            tls_port=tls_port,
            cert=certificates.server_cert_file,
            key=certificates.server_key_file,
        )
    )
    argv = [
        program,
        "-p",
        str(directory),
        "-c",
        str(config),
        "-e",
        str(directory / "error.log"),
    ]
    with server_process(
        argv, directory / "nginx.out", lambda: accepts(port) and accepts(tls_port)
    ):
        yield Nginx(
            directory, port, tls_port, program_version([program, "-v"]), certificates
        )


@pytest.fixture
def http_client(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``examples/http_client.py``, imported (it needs h11)."""
    require_module("h11")
    monkeypatch.syspath_prepend(str(EXAMPLES))
    module: ModuleType = importlib.import_module("http_client")
    return module


def marker() -> str:
    """A query string that tells this test's requests apart in the access log."""
    return f"t={uuid.uuid4().hex}"


# -- keep-alive, lengths and chunks -------------------------------------------------


async def test_keep_alive_with_length_and_chunked_bodies(
    nginx: Nginx, http_client: Any
) -> None:
    tag = marker()
    requests = [
        ("/big.bin", FILES["big.bin"], False),
        ("/small.txt", FILES["small.txt"], False),
        ("/ssi/page.html", FILES["page.html"], True),
        ("/empty.txt", b"", False),
        ("/ssi/small.txt", FILES["small.txt"], True),
        ("/page.html", FILES["page.html"], False),
    ]
    origin, _ = http_client.split_url(nginx.url("/"))
    with anyio.fail_after(TIMEOUT):
        connection = await http_client.HTTPConnection.open(origin)
        try:
            for path, content, chunked in requests:
                response = await connection.request("GET", f"{path}?{tag}")
                assert response.status == 200
                assert response.body == content, path
                if chunked:
                    assert response.header(b"transfer-encoding") == b"chunked"
                    assert response.header(b"content-length") is None
                else:
                    assert (
                        response.header(b"content-length") == str(len(content)).encode()
                    )
                assert connection.reusable
        finally:
            await connection.close()
    log = nginx.connections(tag, len(requests))
    assert [entry[2] for entry in log] == [
        f"GET {path}?{tag} HTTP/1.1" for path, _, _ in requests
    ]
    assert len({entry[0] for entry in log}) == 1, log  # one connection...
    assert [entry[1] for entry in log] == list(range(1, len(requests) + 1))  # ...reused


async def test_gzip_chunked_body(nginx: Nginx, http_client: Any) -> None:
    origin, _ = http_client.split_url(nginx.url("/"))
    with anyio.fail_after(TIMEOUT):
        connection = await http_client.HTTPConnection.open(origin)
        try:
            response = await connection.request(
                "GET", "/gzip/page.html", [("Accept-Encoding", "gzip")]
            )
        finally:
            await connection.close()
    assert response.status == 200
    assert response.header(b"transfer-encoding") == b"chunked"
    assert response.header(b"content-encoding") == b"gzip"
    assert len(response.body) < len(FILES["page.html"]) // 2
    assert gzip.decompress(response.body) == FILES["page.html"]


async def test_not_found_keeps_the_connection(nginx: Nginx, http_client: Any) -> None:
    tag = marker()
    origin, _ = http_client.split_url(nginx.url("/"))
    with anyio.fail_after(TIMEOUT):
        connection = await http_client.HTTPConnection.open(origin)
        try:
            missing = await connection.request("GET", f"/missing.txt?{tag}")
            found = await connection.request("GET", f"/small.txt?{tag}")
        finally:
            await connection.close()
    assert missing.status == 404
    assert b"404 Not Found" in missing.body
    assert missing.header(b"content-length") == str(len(missing.body)).encode()
    assert (found.status, found.body) == (200, FILES["small.txt"])
    log = nginx.connections(tag, 2)
    assert [(entry[1], entry[3]) for entry in log] == [(1, 404), (2, 200)]
    assert log[0][0] == log[1][0]


async def test_server_ending_keep_alive(nginx: Nginx, http_client: Any) -> None:
    # nginx answers the second request on a connection with Connection: close
    # here; fetch() opens a new connection for the next one.
    tag = marker()
    names = ["small.txt", "big.bin", "page.html", "empty.txt", "small.txt"]
    out = BytesIO()
    with anyio.fail_after(TIMEOUT):
        opened = await http_client.fetch(
            [nginx.url(f"/few/{name}?{tag}") for name in names], out
        )
    assert out.getvalue() == b"".join(FILES[name] for name in names)
    assert opened == 3
    log = nginx.connections(tag, len(names))
    assert [entry[1] for entry in log] == [1, 2, 1, 2, 1]
    assert len({entry[0] for entry in log}) == 3


class SlowOutput(BytesIO):
    """Output that takes its time over the first body it gets."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def write(self, data: Any) -> int:
        if self.delay:
            time.sleep(self.delay)  # blocks: nothing else happens meanwhile
            self.delay = 0
        return super().write(data)


async def test_stale_connection_is_retried(nginx: Nginx, http_client: Any) -> None:
    # While the client is busy with the first body, nginx closes the idle
    # connection; the next GET, sent on it, meets the closed connection and
    # is sent again on a new one.
    tag = marker()
    out = SlowOutput(delay=1.0)
    urls = [nginx.url(f"/brief/{name}?{tag}") for name in ("small.txt", "page.html")]
    with anyio.fail_after(TIMEOUT):
        opened = await http_client.fetch(urls, out)
    assert out.getvalue() == FILES["small.txt"] + FILES["page.html"]
    assert opened == 2
    log = nginx.connections(tag, 2)
    assert [entry[1] for entry in log] == [1, 1]
    assert log[0][0] != log[1][0]


# -- HTTPS --------------------------------------------------------------------------


async def test_https_keep_alive(nginx: Nginx, http_client: Any) -> None:
    tag = marker()
    names = ["big.bin", "small.txt", "page.html"]
    out = BytesIO()
    context = nginx.certificates.client_context()
    with anyio.fail_after(TIMEOUT):
        opened = await http_client.fetch(
            [nginx.url(f"/{name}?{tag}", tls=True) for name in names]
            + [nginx.url(f"/ssi/page.html?{tag}", tls=True)],
            out,
            ssl_context=context,
        )
    assert (
        out.getvalue() == b"".join(FILES[name] for name in names) + FILES["page.html"]
    )
    assert opened == 1
    log = nginx.connections(tag, 4)
    assert [entry[1] for entry in log] == [1, 2, 3, 4]
    assert len({entry[0] for entry in log}) == 1


async def test_https_verifies_the_certificate(nginx: Nginx, http_client: Any) -> None:
    # The system's authorities do not know trustme's.
    origin, _ = http_client.split_url(nginx.url("/", tls=True))
    with (
        anyio.fail_after(TIMEOUT),
        pytest.raises(ssl.SSLCertVerificationError) as caught,
    ):
        await http_client.HTTPConnection.open(origin, ssl.create_default_context())
    assert "unable to get local issuer certificate" in str(caught.value)


async def test_https_verifies_the_host_name(nginx: Nginx, http_client: Any) -> None:
    # The certificate is for "localhost", not for 127.0.0.1.
    origin, _ = http_client.split_url(f"https://127.0.0.1:{nginx.tls_port}/")
    with (
        anyio.fail_after(TIMEOUT),
        pytest.raises(ssl.SSLCertVerificationError) as caught,
    ):
        await http_client.HTTPConnection.open(
            origin, nginx.certificates.client_context()
        )
    assert "IP address mismatch" in str(caught.value)


# -- the example as a program -------------------------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "uvloop", "trio"])
def test_example_program(nginx: Nginx, backend: str) -> None:
    require_module("h11")
    urls = [
        nginx.url("/small.txt"),
        nginx.url("/ssi/page.html"),
        nginx.url("/big.bin", tls=True),
        nginx.url("/small.txt", tls=True),
    ]
    result = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "http_client.py"),
            "--backend",
            backend,
            "--cafile",
            str(nginx.certificates.ca_file),
            *urls,
        ],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert result.stderr == b""
    assert result.stdout == (
        FILES["small.txt"] + FILES["page.html"] + FILES["big.bin"] + FILES["small.txt"]
    )


@pytest.mark.parametrize("backend", ["asyncio", "uvloop", "trio"])
def test_example_program_include_and_failure(nginx: Nginx, backend: str) -> None:
    require_module("h11")
    command = [sys.executable, str(EXAMPLES / "http_client.py"), "--backend", backend]
    included = subprocess.run(
        [*command, "--include", nginx.url("/ssi/small.txt")],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert included.returncode == 0, included.stderr.decode(errors="replace")
    head, _, body = included.stdout.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    assert b"Transfer-Encoding: chunked" in lines
    assert f"Server: {nginx.version.split()[-1]}".encode() in lines
    assert body == FILES["small.txt"]
    # Without --cafile, the system's authorities refuse the certificate.
    untrusted = subprocess.run(
        [*command, nginx.url("/small.txt", tls=True)],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert untrusted.returncode == 1
    assert untrusted.stdout == b""
    assert b"CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
