"""The documentation's code, docs/tutorial/code/*.py, run on every backend.

Every file the tutorial and the porting guide include is imported and its
``main()`` called here with a free port or a temporary path, on asyncio,
uvloop and trio, and run once as a script, the way a reader would run it.
So is the example in README.md.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import os
import signal
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest
import trio
import trustme
from programs import require_module

import portastreams
import portastreams.testing

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
CODE = ROOT / "docs" / "tutorial" / "code"
SCRIPTS = sorted(path.name for path in CODE.glob("*.py"))


@pytest.fixture
def tutorial(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Import a tutorial file by name; the files import one another by name too."""
    monkeypatch.syspath_prepend(str(CODE))

    def load(name: str) -> ModuleType:
        return importlib.import_module(name)

    return load


@pytest.fixture(scope="session")
def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context for "localhost" and a client context trusting it."""
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    return server_context, client_context


def test_every_file_is_tested() -> None:
    tested = {
        "http_h11.py",
        "porting_anyio.py",
        "porting_asyncio.py",
        "porting_trio.py",
        "redis_protocol.py",  # needs a redis-server: tests/interop/test_redis_tutorial.py
        "production.py",
        "step1_backends.py",  # run as a script below, on each backend
        "step1_echo.py",
        "step1_unix.py",
        "step2_lines.py",
        "step3_frames.py",
        "step4_timeouts.py",
        "step5_flow_control.py",
        "step6_shutdown.py",
        "starttls_guard.py",
        "step7_starttls.py",
        "step7_tls.py",
        "step8_testing.py",
    }
    assert set(SCRIPTS) == tested


# -- the steps, on asyncio, uvloop and trio ----------------------------------


async def test_step1_echo(tutorial: Any) -> None:
    assert await tutorial("step1_echo").main(0) == b"Hello, World!\n"


async def test_step1_unix(tutorial: Any) -> None:
    # A short directory: a socket path must fit in about 100 bytes.
    with tempfile.TemporaryDirectory(prefix="ps-") as directory:
        path = Path(directory) / "echo.sock"
        reply = await tutorial("step1_unix").main(str(path))
        assert reply == b"Hello over a Unix socket!\n"
        assert not path.exists()  # the server removed its socket file


async def test_step2_lines(tutorial: Any) -> None:
    assert await tutorial("step2_lines").main(0) == [
        b"HELLO\n",
        b"ERR line too long\n",
        b"STILL THERE?\n",
    ]


async def test_step2_readuntil_leaves_an_overlong_line_buffered() -> None:
    # What lines.rst says about readuntil(): over the limit, the data stays,
    # and LimitOverrunError.consumed tells how much to skip.
    reader = portastreams.StreamReader(limit=4)
    reader.feed_data(b"123456\nok\n")
    with pytest.raises(portastreams.LimitOverrunError) as caught:
        await reader.readuntil(b"\n")
    assert caught.value.consumed == 6
    assert await reader.readexactly(caught.value.consumed + 1) == b"123456\n"
    assert await reader.readline() == b"ok\n"


async def test_step3_frames(tutorial: Any) -> None:
    assert await tutorial("step3_frames").main(0) == [
        b"desserts",
        b"",
        b"sllun dna\x00skaerb\nenil",
        b"truncated frame: 3 of 10 bytes",
    ]


async def test_step4_anyio_timeout(tutorial: Any) -> None:
    step4 = tutorial("step4_timeouts")
    assert await step4.main(step4.ask_anyio, 0) == b"Hello, World!\n"


async def test_step4_native_timeout(tutorial: Any, backend_name: str) -> None:
    step4 = tutorial("step4_timeouts")
    ask = step4.ask_trio if backend_name == "trio" else step4.ask_asyncio
    assert await step4.main(ask, 0) == b"Hello, World!\n"


async def test_step5_flow_control(tutorial: Any) -> None:
    step5 = tutorial("step5_flow_control")
    reply, most_buffered = await step5.main(0)
    assert reply == f"received {len(step5.CHUNK) * step5.CHUNKS} bytes\n".encode()
    # After drain() returns, at most the high-water mark (64 KiB) is waiting.
    assert most_buffered <= 65536


async def test_step6_graceful_shutdown(
    tutorial: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    step6 = tutorial("step6_shutdown")
    async with anyio.create_task_group() as task_group:
        port = await task_group.start(step6.main, 0, 0.2)
        leaving_reader, leaving_writer = await portastreams.open_connection(
            "127.0.0.1", port
        )
        staying_reader, staying_writer = await portastreams.open_connection(
            "127.0.0.1", port
        )
        leaving_writer.write(b"bye\n")
        assert await leaving_reader.readline() == b"> bye\n"
        leaving_writer.close()
        await leaving_writer.wait_closed()
        staying_writer.write(b"still here\n")
        assert await staying_reader.readline() == b"> still here\n"

        os.kill(os.getpid(), signal.SIGTERM)
        # After the grace period the server closes the connection it still has.
        with anyio.fail_after(10):
            assert await staying_reader.read() == b""
        staying_writer.close()
        await staying_writer.wait_closed()
    # main() has returned: nothing listens on the port any more.
    with pytest.raises(ConnectionRefusedError):
        await portastreams.open_connection("127.0.0.1", port)
    output = capsys.readouterr().out
    assert "SIGTERM: shutting down" in output
    assert output.endswith("Server stopped\n")


async def test_step7_tls(
    tutorial: Any, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    reply = await tutorial("step7_tls").main(*tls_contexts, 0)
    assert reply.startswith(b"Hello, Alice, over TLSv1.")


async def test_step7_tls_refuses_an_untrusted_server(
    tutorial: Any, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_context, _ = tls_contexts
    with pytest.raises(ssl.SSLCertVerificationError):
        await tutorial("step7_tls").main(server_context, ssl.create_default_context())


async def test_step7_starttls(
    tutorial: Any, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    reply = await tutorial("step7_starttls").main(*tls_contexts, 0)
    assert reply == b"Hello, Bob, privately\n"


async def test_step8_testing(tutorial: Any) -> None:
    step8 = tutorial("step8_testing")
    assert await step8.test_handle_commands() == [b"HELLO\n", b"ERR line too long\n"]
    checked = await step8.check_my_transport()
    assert len(checked) == 2 * len(portastreams.testing.SCENARIOS)


# -- real protocols: HTTP with h11, STARTTLS safely ------------------------


async def test_http_h11(tutorial: Any) -> None:
    require_module("h11")
    assert await tutorial("http_h11").main(0) == [
        (200, b"length 21", b"You asked for /hello\n"),
        (200, b"chunked", b"You asked for /chunked\n"),
    ]


async def test_starttls_guard(
    tutorial: Any, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    assert await tutorial("starttls_guard").main(*tls_contexts, 0) == [
        b"Hello, Carol, privately\n",
        b"Hello, Mallory, privately\n",  # step 7's server: plain text got in
        b"Hello, Carol, privately\n",
        b"ERR nothing may follow STARTTLS\n",
    ]


@pytest.mark.skipif(
    sys.version_info < (3, 11),
    reason="asyncio's StreamWriter.start_tls() is new in 3.11",
)
def test_starttls_keeps_the_buffer_as_asyncio_does(
    tutorial: Any, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    # What starttls.rst says: the upgrade keeps what the reader has buffered,
    # in asyncio's own streams too -- step 7's server, on asyncio's own
    # start_server, greets Mallory "privately" as well.
    handle_starttls = tutorial("step7_starttls").handle_starttls
    server_context, client_context = tls_contexts

    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await handle_starttls(reader, writer, server_context)
        writer.close()  # asyncio's servers leave that to the handler
        await writer.wait_closed()

    async def attack() -> bytes:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await reader.readline()
            writer.write(b"STARTTLS\nMallory\n")
            assert await reader.readline() == b"GO AHEAD\n"
            if sys.version_info >= (3, 11):  # (mypy checks this file as 3.10)
                await writer.start_tls(client_context, server_hostname="localhost")
            writer.write(b"Carol\n")
            answer = await reader.readline()
            writer.close()
            await writer.wait_closed()
        return answer

    assert asyncio.run(asyncio.wait_for(attack(), 30)) == b"Hello, Mallory, privately\n"


# -- the porting guide's program: asyncio, trio, and AnyIO on every backend --


async def test_production(tutorial: Any) -> None:
    # One client at a time, idle clients sent away: production.rst's example.
    with anyio.fail_after(10):
        assert await tutorial("production").main(0, idle_timeout=0.2) == [
            b"HELLO\n",
            b"busy, try again later\n",
            b"idle for too long, bye\n",
        ]


async def test_production_aborts_a_client_that_does_not_read(tutorial: Any) -> None:
    # The write timeout: a client that leaves its replies unread is dropped
    # (a reset, not a flush that would never finish), and the server goes on.
    production = tutorial("production")
    handler = functools.partial(
        production.handle,
        clients=anyio.CapacityLimiter(10),
        idle_timeout=10.0,
        write_timeout=0.2,
    )
    with anyio.fail_after(10):
        server = await portastreams.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            _, writer = await portastreams.open_connection("127.0.0.1", port)
            line = b"x" * 60_000 + b"\n"
            sent = 0

            async def send_without_reading() -> None:
                nonlocal sent
                while True:
                    writer.write(line)
                    sent += len(line)
                    await writer.drain()

            with pytest.raises(ConnectionError):  # reset by the server's abort
                await send_without_reading()
            assert sent > 100_000  # more than the buffers could hold unread
            writer.close()
            await writer.wait_closed()
            other_reader, other_writer = await portastreams.open_connection(
                "127.0.0.1", port
            )
            other_writer.write(b"still there?\n")
            assert await other_reader.readline() == b"STILL THERE?\n"
            other_writer.close()
            await other_writer.wait_closed()


def test_porting_asyncio_original(tutorial: Any) -> None:
    main = tutorial("porting_asyncio").main
    assert asyncio.run(main(0)) == [b"one\n", b"two\n"]


def test_porting_trio_version(tutorial: Any) -> None:
    assert trio.run(tutorial("porting_trio").main, 0) == [b"one\n", b"two\n"]


async def test_porting_anyio_version(tutorial: Any) -> None:
    assert await tutorial("porting_anyio").main(0) == [b"one\n", b"two\n"]


# -- each file as a script ----------------------------------------------------


def run_script(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-W", "error", *args],
        cwd=CODE,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("step1_echo.py", "Received: b'Hello, World!\\n'\n"),
        ("step1_unix.py", "Received: b'Hello over a Unix socket!\\n'\n"),
        ("step2_lines.py", "b'HELLO\\n'\nb'ERR line too long\\n'\n"),
        ("step3_frames.py", "b'truncated frame: 3 of 10 bytes'\n"),
        ("step4_timeouts.py", "Received: b'Hello, World!\\n'\n"),
        ("step5_flow_control.py", "b'received 4194304 bytes\\n'\n"),
        ("step7_tls.py", "(('DNS', 'localhost'),)\n"),
        ("step7_starttls.py", "Received b'Hello, Bob, privately\\n'"),
        ("step8_testing.py", "28 contract checks passed\n"),
        ("http_h11.py", "(200, b'chunked', b'You asked for /chunked\\n')\n"),
        (
            "starttls_guard.py",
            "handle_guarded: b'STARTTLS\\nMallory\\n' -> "
            "b'ERR nothing may follow STARTTLS\\n'\n",
        ),
        ("porting_asyncio.py", "[b'one\\n', b'two\\n']\n"),
        ("porting_trio.py", "[b'one\\n', b'two\\n']\n"),
        ("porting_anyio.py", "[b'one\\n', b'two\\n']\n"),
        (
            "production.py",
            "b'HELLO\\n'\nb'busy, try again later\\n'\nb'idle for too long, bye\\n'\n",
        ),
    ],
)
def test_script(script: str, expected: str) -> None:
    if script == "http_h11.py":
        require_module("h11")
    assert expected in run_script(script)


@pytest.mark.parametrize("backend", ["asyncio", "uvloop", "trio"])
def test_step1_backends_script(backend: str) -> None:
    assert run_script("step1_backends.py", backend) == (
        "Received: b'Hello, World!\\n'\n"
    )


def test_readme_example(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    example = readme.split("```python\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "readme_example.py"
    for backend in ["asyncio", "trio"]:
        script.write_text(example.replace('backend="trio"', f"backend={backend!r}"))
        assert run_script(str(script)) == "b'HELLO, TRIO\\n'\n"


def test_step6_script_stops_on_ctrl_c() -> None:
    with subprocess.Popen(
        [sys.executable, "-u", "-W", "error", "step6_shutdown.py", "0"],
        cwd=CODE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        first_line = process.stdout.readline()
        assert first_line.startswith("Serving on port ")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert err == ""
    assert out == "SIGINT: shutting down\nServer stopped\n"
