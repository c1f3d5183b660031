"""The four examples of asyncio's streams documentation (``examples/``), run as programs on every backend."""

from __future__ import annotations

import ast
import ssl
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
from subprocesses import BACKEND_NAMES, EXAMPLES, Background, describe, run_python

pytestmark = pytest.mark.parametrize("backend", BACKEND_NAMES)


def example(name: str) -> str:
    return str(EXAMPLES / name)


# -- echo ---------------------------------------------------------------------


def test_echo_server_and_client(backend: str) -> None:
    with Background(
        [example("echo_server.py"), "--backend", backend, "--port", "0"]
    ) as server:
        serving = server.wait_for_line(lambda line: line.startswith("Serving on "))
        host, port = ast.literal_eval(serving.removeprefix("Serving on "))
        assert host == "127.0.0.1"
        assert isinstance(port, int)
        assert port > 0

        client = run_python(
            [example("echo_client.py"), "--backend", backend, "--port", str(port)]
        )
        assert client.returncode == 0, describe(client)
        assert client.stdout == (
            "Send: 'Hello World!'\nReceived: 'Hello World!'\nClose the socket\n"
        )
        assert client.stderr == ""

        server.wait_for_line(lambda line: line == "Close the client socket\n")
        assert server.interrupt() == 0, server.output()  # Ctrl+C: a clean exit

    lines = server.stdout_lines
    assert len(lines) == 4, server.output()
    assert lines[0] == f"Serving on ('127.0.0.1', {port})\n"
    received = "Received 'Hello World!' from "
    assert lines[1].startswith(received)
    peer_host, peer_port = ast.literal_eval(lines[1].removeprefix(received))
    assert peer_host == "127.0.0.1"
    assert isinstance(peer_port, int)
    assert peer_port != port
    assert lines[2:] == ["Send: 'Hello World!'\n", "Close the client socket\n"]
    assert server.stderr_lines == []


# -- wait_for_data -------------------------------------------------------------


def test_wait_for_data(backend: str) -> None:
    result = run_python([example("wait_for_data.py"), "--backend", backend])
    assert result.returncode == 0, describe(result)
    assert result.stdout == "Received: abc\n"
    assert result.stderr == ""


# -- http_headers ---------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    version: str
    host: str | None


@dataclass
class HTTPServer:
    """A local HTTP(S) server in a thread, recording the requests it gets."""

    server: ThreadingHTTPServer
    requests: list[Request] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    @property
    def port(self) -> int:
        port: int = self.server.server_address[1]
        return port


class _Handler(BaseHTTPRequestHandler):
    server_version = "ExampleTest/1.0"
    sys_version = ""

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()  # here, not in the accepting thread
        super().setup()

    def do_HEAD(self) -> None:
        recorder: HTTPServer = self.server.recorder  # type: ignore[attr-defined]
        recorder.requests.append(
            Request(self.command, self.path, self.request_version, self.headers["Host"])
        )
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", "12")
        self.send_header("X-Requested-Path", self.path)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    recorder: HTTPServer
    tls: ssl.SSLContext | None = None

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        if self.tls is not None:
            sock = self.tls.wrap_socket(
                sock, server_side=True, do_handshake_on_connect=False
            )
        return sock, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        assert error is not None
        self.recorder.errors.append(error)


def _serve(tls: ssl.SSLContext | None) -> Iterator[HTTPServer]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.tls = tls
    recorder = server.recorder = HTTPServer(server)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def http_server() -> Iterator[HTTPServer]:
    yield from _serve(None)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def https_server(ca: trustme.CA) -> Iterator[HTTPServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    yield from _serve(context)


def _header_lines(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    assert lines, "no output"
    for line in lines:
        assert line.startswith("HTTP header> "), line
    return [line.removeprefix("HTTP header> ") for line in lines]


def _check_headers(stdout: str, path: str) -> None:
    headers = _header_lines(stdout)
    assert headers[0] == "HTTP/1.0 200 OK"
    assert "Server: ExampleTest/1.0" in headers
    assert "Content-Type: text/plain; charset=utf-8" in headers
    assert "Content-Length: 12" in headers
    assert f"X-Requested-Path: {path}" in headers
    assert any(header.startswith("Date: ") for header in headers)
    assert len(headers) == 6, headers


def test_http_headers(backend: str, http_server: HTTPServer) -> None:
    url = f"http://127.0.0.1:{http_server.port}/path/page.html"
    result = run_python([example("http_headers.py"), "--backend", backend, url])
    assert result.returncode == 0, describe(result)
    _check_headers(result.stdout, "/path/page.html")
    assert result.stderr == ""
    assert http_server.requests == [
        Request("HEAD", "/path/page.html", "HTTP/1.0", "127.0.0.1")
    ]


def test_http_headers_default_path(backend: str, http_server: HTTPServer) -> None:
    url = f"http://127.0.0.1:{http_server.port}"
    result = run_python([example("http_headers.py"), "--backend", backend, url])
    assert result.returncode == 0, describe(result)
    _check_headers(result.stdout, "/")
    assert http_server.requests == [Request("HEAD", "/", "HTTP/1.0", "127.0.0.1")]


def test_https_headers(backend: str, https_server: HTTPServer, ca_file: Path) -> None:
    url = f"https://localhost:{https_server.port}/secure/page.html"
    result = run_python(
        [example("http_headers.py"), "--backend", backend, url],
        env={"SSL_CERT_FILE": str(ca_file)},
    )
    assert result.returncode == 0, describe(result)
    _check_headers(result.stdout, "/secure/page.html")
    assert result.stderr == ""
    assert https_server.requests == [
        Request("HEAD", "/secure/page.html", "HTTP/1.0", "localhost")
    ]
    assert https_server.errors == []


def test_https_verifies_the_certificate(
    backend: str, https_server: HTTPServer, tmp_path: Path
) -> None:
    # Without our CA in SSL_CERT_FILE, the default context must refuse the server.
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    url = f"https://localhost:{https_server.port}/"
    result = run_python(
        [example("http_headers.py"), "--backend", backend, url],
        env={"SSL_CERT_FILE": str(empty), "SSL_CERT_DIR": str(tmp_path)},
    )
    assert result.returncode != 0, describe(result)
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr, describe(result)
    assert result.stdout == ""
    assert https_server.requests == []
