"""A server's last words before it resets the connection must reach the reader.

nats-server answers a message over its ``max_payload`` with
``-ERR 'Maximum Payload Violation'`` and closes the connection while the
rest of the message is still unread, which the kernel turns into a reset.
If the client is still writing that message when the reset arrives, its
write fails. The ``-ERR`` line had arrived before the reset, and
portastreams' contract (docs/api.rst, docs/porting.rst) is that bytes that
arrived before a connection failure are read first, then the error.

On trio (the AnyIO stream path) that does not hold today: the failed write
makes the transport close the stream under the reader, whose next receive
then reports a clean EOF. The line is lost, and the reset is reported as an
EOF. Whether the write fails before the reader has taken the line is a race,
so the first test fails on trio only sometimes; the second is the same
failure without NATS, deterministically.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import sys
import threading
from collections.abc import Iterator

import anyio
import pytest
from backends import ASYNCIO_BACKENDS
from nats_server import NatsServer, running_nats
from subprocesses import EXAMPLES

import portastreams

sys.path.insert(0, str(EXAMPLES))  # the examples are scripts, not a package
from nats_client import NatsClient, NatsError

pytestmark = pytest.mark.anyio

#: Every backend: bytes that arrived before a reset are read first, even after
#: a failed write (the trio path used to lose them).
BACKENDS = [*ASYNCIO_BACKENDS, pytest.param(("trio", {}), id="trio")]
RACING_BACKENDS = BACKENDS

#: Attempts per run of the race.
ATTEMPTS = 20


@pytest.fixture(scope="module")
def nats() -> Iterator[NatsServer]:
    with running_nats(config="max_payload: 1024\n") as server:
        yield server


@pytest.mark.parametrize("anyio_backend", RACING_BACKENDS)
async def test_server_error_before_the_reset_is_read(nats: NatsServer) -> None:
    with anyio.fail_after(60):
        for _ in range(ATTEMPTS):
            async with NatsClient.connect(nats.host, nats.port) as nc:
                assert nc.info["max_payload"] == 1024
                with pytest.raises(ValueError, match="max_payload"):
                    nc.publish("big", bytes(1025))  # the client checks...
                subscription = nc.subscribe("big")
                # ...and the server too, for a client that does not. The
                # payload goes out as its own write(), after the control line.
                nc.send(b"PUB big 1025", bytes(1025))
                with pytest.raises(ConnectionError) as caught:
                    await subscription.next_msg()
                cause = caught.value.__cause__
                assert isinstance(cause, NatsError), repr(cause)
                assert str(cause) == "Maximum Payload Violation"
                with pytest.raises(ConnectionError):
                    await nc.flush()
                with pytest.raises(ConnectionError):
                    nc.publish("big", b"small")


def reset_after_hello(listener: socket.socket, closed: threading.Event) -> None:
    """Accept one client, read its first line, say hello, then reset the connection."""
    connection, _ = listener.accept()
    connection.recv(100)
    connection.sendall(b"hello\r\n")
    # SO_LINGER with a zero timeout: close() sends a reset, not a FIN.
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()
    closed.set()


@pytest.mark.parametrize("anyio_backend", BACKENDS)
async def test_bytes_before_a_reset_survive_a_failed_write() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    closed = threading.Event()
    peer = threading.Thread(target=reset_after_hello, args=(listener, closed))
    peer.start()
    try:
        with anyio.fail_after(30):
            reader, writer = await portastreams.open_connection(*listener.getsockname())
            writer.write(b"first\r\n")
            await anyio.to_thread.run_sync(closed.wait)
            await anyio.sleep(0.2)  # the hello, then the reset, have arrived
            writer.write(b"second\r\n")  # fails: the peer reset the connection
            await anyio.sleep(0.2)
            assert await reader.readline() == b"hello\r\n"
            # Then the reset (or, once a failed send has reported it, an EOF).
            with contextlib.suppress(ConnectionResetError):
                assert await reader.read() == b""
            writer.close()
            await writer.wait_closed()
    finally:
        peer.join(timeout=30)
        listener.close()
