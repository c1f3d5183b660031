"""The HTTP server example (``examples/http_server.py``) against curl and wrk.

The server runs as a program, once per backend, serving a temporary directory;
curl fetches files (several on one connection), uploads bodies to ``/echo``
with a Content-Length and chunked, and speaks HTTP/1.0; wrk loads it for a
moment with a Lua script that checks every response's body. Then the example
client and the example server talk to each other in-process, on each
backend, for the chunked bodies both ways.
"""

from __future__ import annotations

import importlib
import re
import socket
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest
from programs import require_module, require_program
from subprocesses import BACKEND_NAMES, EXAMPLES, Background

import portastreams

#: Deadline for each program a test runs, and for each in-process exchange.
TIMEOUT = 30.0

#: What wrk fetches, and what its script expects (the same string, built in Lua).
WRK_BODY = b"0123456789abcdef" * 4096
WRK_SCRIPT = """\
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) good = 0; bad = 0 end
expected = string.rep("0123456789abcdef", 4096)
function response(status, headers, body)
  if status == 200 and body == expected then good = good + 1 else bad = bad + 1 end
end
function done(summary, latency, requests)
  local good, bad = 0, 0
  for _, thread in ipairs(threads) do
    good = good + thread:get("good")
    bad = bad + thread:get("bad")
  end
  io.write(string.format("checked: %d good, %d bad\\n", good, bad))
end
"""

FILES = {
    "big.bin": bytes(range(256)) * 12288 + b"tail",  # 3 MiB + 4
    "hello.txt": b"hello, curl\n",
    "empty.txt": b"",
    "wrk.txt": WRK_BODY,
    "sub/page.html": b"<p>a page in a folder</p>\n",
}
#: The server's answer to a missing file.
NOT_FOUND = b"not found\n"


@dataclass(frozen=True)
class Server:
    backend: str
    root: Path
    port: int
    directory: Path  # for the tests' own files, outside the served root

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def write_files(root: Path) -> None:
    for name, content in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


@pytest.fixture(scope="module", params=BACKEND_NAMES)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The example server, as a program, on one backend; stopped with Ctrl+C."""
    require_module("h11")
    backend: str = request.param
    directory = tmp_path_factory.mktemp(f"http-{backend}")
    root = directory / "www"
    write_files(root)
    (directory / "secret.txt").write_bytes(b"outside the root\n")
    with Background(
        [
            str(EXAMPLES / "http_server.py"),
            "--backend",
            backend,
            "--port",
            "0",
            "--root",
            str(root),
        ]
    ) as process:
        line = process.wait_for_line(lambda line: line.startswith("Serving HTTP on "))
        match = re.fullmatch(
            r"Serving HTTP on http://127\.0\.0\.1:(\d+)/ from (.*)\n", line
        )
        assert match, line
        assert match.group(2) == str(root.resolve())
        yield Server(backend, root, int(match.group(1)), directory)
        assert process.interrupt() == 0, process.output()
    assert process.stdout_lines[-1] == "stopped\n", process.output()
    assert process.stderr_lines == [], process.output()


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    program = require_program("curl", "curl")
    result = subprocess.run(
        [program, "--silent", "--show-error", *args],
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result


def headers_of(dump: bytes) -> list[dict[str, str]]:
    """Each response's headers (lower-case names) from a ``curl -D`` dump."""
    responses = []
    for block in dump.decode("latin-1").split("\r\n\r\n"):
        lines = block.strip("\r\n").split("\r\n")
        if not lines[0]:
            continue
        fields = dict(line.split(": ", 1) for line in lines[1:])
        responses.append({"": lines[0], **{k.lower(): v for k, v in fields.items()}})
    return responses


# -- curl -------------------------------------------------------------------------


def test_curl_fetches_files_on_one_connection(server: Server) -> None:
    names = [
        "big.bin",
        "hello.txt",
        "empty.txt",
        "sub/page.html",
        "missing.txt",
        "big.bin",
    ]
    outputs = [server.directory / f"out-{i}" for i in range(len(names))]
    arguments: list[str] = []
    for name, output in zip(names, outputs, strict=True):
        arguments += [server.url(f"/{name}"), "--output", str(output)]
    result = curl(
        "--write-out",
        "%{num_connects} %{http_code} %{size_download}\\n",
        *arguments,
    )
    # One connection, opened by the first transfer and reused by the others.
    assert result.stdout.decode().splitlines() == [
        f"{1 if i == 0 else 0} {404 if name == 'missing.txt' else 200} "
        f"{len(FILES.get(name, NOT_FOUND))}"
        for i, name in enumerate(names)
    ]
    for name, output in zip(names, outputs, strict=True):
        assert output.read_bytes() == FILES.get(name, NOT_FOUND), name


def test_curl_head(server: Server) -> None:
    result = curl("--head", server.url("/big.bin"))
    (response,) = headers_of(result.stdout)
    assert response[""] == "HTTP/1.1 200 OK"
    assert response["content-length"] == str(len(FILES["big.bin"]))
    assert response["content-type"] == "application/octet-stream"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_curl_echo(server: Server, chunked: bool) -> None:
    # curl sends a body of more than 1 MiB after "Expect: 100-continue".
    body = server.root / "big.bin"
    extra = ["--header", "Transfer-Encoding: chunked"] if chunked else []
    dump = server.directory / f"echo-headers-{chunked}"
    result = curl(
        "--data-binary",
        f"@{body}",
        "--header",
        "Content-Type: application/x-portastreams",
        *extra,
        "--dump-header",
        str(dump),
        server.url("/echo"),
    )
    assert result.stdout == FILES["big.bin"]
    *informational, response = headers_of(dump.read_bytes())
    assert [item[""] for item in informational] in ([], ["HTTP/1.1 100 Continue"])
    assert response[""] == "HTTP/1.1 200 OK"
    assert response["transfer-encoding"] == "chunked"
    assert response["content-type"] == "application/x-portastreams"
    assert "content-length" not in response


def test_curl_http_1_0(server: Server) -> None:
    # HTTP/1.0 has no chunked encoding: the echo ends by closing the connection.
    dumps = [server.directory / "http10-echo", server.directory / "http10-get"]
    result = curl(
        "--http1.0",
        "--data-binary",
        "@" + str(server.root / "hello.txt"),
        "--dump-header",
        str(dumps[0]),
        server.url("/echo"),
        "--next",
        "--http1.0",
        "--dump-header",
        str(dumps[1]),
        server.url("/hello.txt"),
    )
    assert result.stdout == FILES["hello.txt"] * 2
    (echo,) = headers_of(dumps[0].read_bytes())
    assert echo[""] == "HTTP/1.1 200 OK"
    assert "transfer-encoding" not in echo
    assert "content-length" not in echo
    assert echo["connection"] == "close"
    (get,) = headers_of(dumps[1].read_bytes())
    assert get[""] == "HTTP/1.1 200 OK"
    assert get["content-length"] == str(len(FILES["hello.txt"]))
    assert get["connection"] == "close"


def test_curl_errors(server: Server) -> None:
    status = ["--output", "/dev/null", "--write-out", "%{http_code}\\n"]
    result = curl(
        "--path-as-is",
        *status,
        server.url("/../secret.txt"),  # outside the root
        *status,
        server.url("/sub"),  # a directory
        "--next",
        *status,
        "--request",
        "DELETE",
        server.url("/hello.txt"),
        "--next",
        *status,
        "--request",
        "GET",
        server.url("/echo"),
    )
    assert result.stdout.decode().splitlines() == ["404", "404", "405", "405"]


def exchange_raw(port: int, data: bytes) -> bytes:
    """Send ``data``, half-close, and return everything the server sends back."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        received = bytearray()
        while chunk := sock.recv(65536):
            received += chunk
    return bytes(received)


def test_pipelined_requests(server: Server) -> None:
    # Two requests in one packet: answered in order, on the same connection.
    reply = exchange_raw(
        server.port,
        b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /sub/page.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    first, rest = reply.split(b"\r\n\r\n", 1)
    assert first.startswith(b"HTTP/1.1 200 OK\r\n")
    assert rest.startswith(FILES["hello.txt"] + b"HTTP/1.1 200 OK\r\n")
    assert rest.endswith(b"\r\n\r\n" + FILES["sub/page.html"])
    assert b"connection: close" in rest.lower()


def test_malformed_request(server: Server) -> None:
    reply = exchange_raw(server.port, b"GET / HTTP/1.1\r\nno colon here\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n"), reply


# -- wrk ----------------------------------------------------------------------------


def test_wrk(server: Server) -> None:
    program = require_program("wrk", "wrk")
    script = server.directory / "check.lua"
    script.write_text(WRK_SCRIPT)
    result = subprocess.run(
        [
            program,
            "--threads",
            "1",
            "--connections",
            "8",
            "--duration",
            "1s",
            "--script",
            str(script),
            server.url("/wrk.txt"),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    output = result.stdout
    assert "Non-2xx or 3xx responses" not in output, output
    assert "Socket errors" not in output, output
    requests = re.search(r"^\s*(\d+) requests in ", output, re.MULTILINE)
    checked = re.search(r"^checked: (\d+) good, (\d+) bad$", output, re.MULTILINE)
    assert requests, output
    assert checked, output
    assert int(requests.group(1)) > 0
    assert int(checked.group(1)) == int(requests.group(1)), output
    assert int(checked.group(2)) == 0, output


# -- the example client and server together, in-process --------------------------


def import_example(name: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    require_module("h11")
    monkeypatch.syspath_prepend(str(EXAMPLES))
    module: ModuleType = importlib.import_module(name)
    return module


@pytest.mark.anyio
async def test_example_client_and_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    http_client = import_example("http_client", monkeypatch)
    http_server = import_example("http_server", monkeypatch)
    write_files(tmp_path)
    upload = bytes(range(251)) * 9000  # 2.2 MB, neither a power of two nor aligned

    async def handle(reader: Any, writer: Any) -> None:
        await http_server.handle(reader, writer, tmp_path)

    server = await portastreams.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        origin, _ = http_client.split_url(f"http://127.0.0.1:{port}/")
        with anyio.fail_after(TIMEOUT):
            connection = await http_client.HTTPConnection.open(origin)
            try:
                responses: Sequence[Any] = [
                    await connection.request("POST", "/echo", body=upload),
                    await connection.request("GET", "/big.bin"),
                    await connection.request("POST", "/echo", body=b""),
                    await connection.request("GET", "/sub/page.html"),
                ]
                assert connection.reusable
            finally:
                await connection.close()
    echo, big, empty, page = responses
    assert (echo.status, echo.header(b"transfer-encoding")) == (200, b"chunked")
    assert echo.body == upload
    assert (big.status, big.body) == (200, FILES["big.bin"])
    assert (empty.status, empty.body) == (200, b"")
    assert (page.status, page.header(b"content-type")) == (200, b"text/html")
    assert page.body == FILES["sub/page.html"]
