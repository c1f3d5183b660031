"""The NATS example client (examples/nats_client.py) against a real nats-server.

Every test runs on asyncio, uvloop and trio. Payloads are checked byte for
byte; the server's own monitoring API says what it saw of our connections.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import anyio
import pytest
from nats_server import NatsServer, running_nats
from subprocesses import EXAMPLES

import portastreams

sys.path.insert(0, str(EXAMPLES))  # the examples are scripts, not a package
from nats_client import Msg, NatsClient, NatsError

pytestmark = pytest.mark.anyio

DEADLINE = 60

MiB = 2**20


@pytest.fixture(scope="module")
def nats() -> Iterator[NatsServer]:
    with running_nats() as server:
        yield server


def binary_payload(size: int, seed: int = 0) -> bytes:
    """Random bytes with CRLF, "MSG " and NUL inside: nothing may be taken for framing."""
    payload = bytearray(os.urandom(size))
    marker = b"\r\nMSG x 1 3\r\n\x00"
    if size > len(marker):
        middle = size // 2
        payload[middle : middle + len(marker)] = marker
    return bytes(payload)


async def connz(server: NatsServer) -> dict[str, dict[str, object]]:
    """The server's view of its client connections, by connection name."""
    report = await anyio.to_thread.run_sync(server.monitor, "connz?subs=1")
    return {str(c.get("name")): c for c in report["connections"]}


# -- connecting -------------------------------------------------------------------


async def test_connect(nats: NatsServer) -> None:
    with anyio.fail_after(DEADLINE):
        async with NatsClient.connect(nats.host, nats.port, name="test-connect") as nc:
            # INFO, parsed: it is the server we started.
            assert nats.version.endswith(f"v{nc.info['version']}")
            assert nc.info["max_payload"] == MiB
            assert (
                nc.info["server_id"]
                == (await anyio.to_thread.run_sync(nats.monitor, "varz"))["server_id"]
            )
            # CONNECT, as the server understood it.
            seen = (await connz(nats))["test-connect"]
            assert seen["lang"] == "python"
            assert seen["version"] == "0.1"


async def test_authorization_error() -> None:
    with (
        running_nats(args=["--auth", "s3cret"]) as server,
        anyio.fail_after(DEADLINE),
        pytest.raises(NatsError, match="Authorization Violation"),
    ):
        async with NatsClient.connect(server.host, server.port):
            pass  # pragma: no cover


# -- publish and subscribe ------------------------------------------------------------


async def test_pub_sub_binary_payloads(nats: NatsServer) -> None:
    sizes = [0, 1, 5, 1000, 65535, 65536 + 3, 512 * 1024, MiB]
    sent = [(f"data.size.{size}", binary_payload(size)) for size in sizes]
    with anyio.fail_after(DEADLINE):
        async with (
            NatsClient.connect(nats.host, nats.port, name="binary-sub") as sub_client,
            NatsClient.connect(nats.host, nats.port, name="binary-pub") as pub_client,
        ):
            everything = sub_client.subscribe("data.>")
            only_small = sub_client.subscribe("data.size.1")
            await sub_client.flush()  # the server has the subscriptions
            for subject, payload in sent:
                pub_client.publish(subject, payload)
            await pub_client.flush()

            received = [await everything.next_msg() for _ in sent]
            assert received == [Msg(subject, payload) for subject, payload in sent]
            assert await only_small.next_msg() == Msg("data.size.1", sent[1][1])

            # The server counted the same payload bytes in and out.
            seen = await connz(nats)
            total = sum(sizes)
            assert seen["binary-pub"]["in_bytes"] == total
            assert seen["binary-sub"]["out_bytes"] == total + 1
            assert seen["binary-sub"]["subscriptions"] == 2


async def test_10000_messages_in_order_and_a_queue_group(nats: NatsServer) -> None:
    count = 10_000
    with anyio.fail_after(DEADLINE):
        async with (
            NatsClient.connect(nats.host, nats.port) as subscriber,
            NatsClient.connect(nats.host, nats.port) as publisher,
        ):
            ordered = subscriber.subscribe("numbers")
            workers = [subscriber.subscribe("numbers", queue="workers") for _ in "ab"]
            await subscriber.flush()
            for i in range(count):
                publisher.publish("numbers", b"%d" % i)
            await publisher.flush()

            assert [(await ordered.next_msg()).data for _ in range(count)] == [
                b"%d" % i for i in range(count)
            ]
            # Each message went to exactly one member of the queue group.
            await subscriber.flush()
            shares: list[list[int]] = [[], []]
            for share, worker in zip(shares, workers, strict=True):
                while True:
                    with anyio.move_on_after(0.2):
                        share.append(int((await worker.next_msg()).data))
                        continue
                    break
            assert sorted(shares[0] + shares[1]) == list(range(count))
            assert all(share == sorted(share) for share in shares)


async def test_request_reply(nats: NatsServer) -> None:
    async def respond(nc: NatsClient, ready: anyio.Event) -> None:
        service = nc.subscribe("reverse")
        await nc.flush()
        ready.set()
        for _ in range(3):
            request = await service.next_msg()
            assert request.reply is not None
            nc.publish(request.reply, request.data[::-1])

    with anyio.fail_after(DEADLINE):
        async with (
            NatsClient.connect(nats.host, nats.port) as server_side,
            NatsClient.connect(nats.host, nats.port) as client_side,
            anyio.create_task_group() as task_group,
        ):
            ready = anyio.Event()
            task_group.start_soon(respond, server_side, ready)
            await ready.wait()
            for data in (b"stressed", b"", binary_payload(300_000)):
                answer = await client_side.request("reverse", data)
                assert answer.data == data[::-1]
                assert answer.subject.startswith("_INBOX.")


async def test_unsubscribe(nats: NatsServer) -> None:
    with anyio.fail_after(DEADLINE):
        async with NatsClient.connect(nats.host, nats.port) as nc:
            kept, dropped = nc.subscribe("topic"), nc.subscribe("topic")
            nc.publish("topic", b"both")
            await nc.flush()
            dropped.unsubscribe()
            nc.publish("topic", b"one")
            await nc.flush()
            assert (await dropped.next_msg()).data == b"both"  # queued before
            with pytest.raises(ConnectionError):
                await dropped.next_msg()  # and nothing more
            assert [(await kept.next_msg()).data for _ in "12"] == [b"both", b"one"]


async def test_next_msg_timeout_loses_nothing(nats: NatsServer) -> None:
    with anyio.fail_after(DEADLINE):
        async with NatsClient.connect(nats.host, nats.port) as nc:
            subscription = nc.subscribe("later")
            with anyio.move_on_after(0.1) as scope:
                await subscription.next_msg()
            assert scope.cancelled_caught
            nc.publish("later", b"on time")
            assert await subscription.next_msg() == Msg("later", b"on time")


async def test_many_flushes_at_once(nats: NatsServer) -> None:
    # PONGs come back in the order of the PINGs; each flush gets its own.
    with anyio.fail_after(DEADLINE):
        async with NatsClient.connect(nats.host, nats.port) as nc:
            done: list[int] = []

            async def flush(i: int) -> None:
                await nc.flush()
                done.append(i)

            async with anyio.create_task_group() as task_group:
                for i in range(100):
                    task_group.start_soon(flush, i)
            assert sorted(done) == list(range(100))


# -- the server's PINGs, its errors, its end ----------------------------------------------


async def test_server_pings_are_answered() -> None:
    config = 'ping_interval: "100ms"\nping_max: 2\n'
    with running_nats(config=config) as server, anyio.fail_after(DEADLINE):
        async with NatsClient.connect(server.host, server.port, name="pinged") as nc:
            await anyio.sleep(1)
            assert nc.pings_answered >= 3
            await nc.flush()  # still connected
            assert "pinged" in await connz(server)

        # What happens to a client that does not answer: the server drops it.
        reader, writer = await portastreams.open_connection(server.host, server.port)
        writer.write(b'CONNECT {"verbose":false}\r\n')
        lines = [line async for line in reader]  # until the server closes
        writer.close()
        await writer.wait_closed()
        assert lines[0].startswith(b"INFO ")
        assert set(lines[1:-1]) == {b"PING\r\n"}
        assert lines[-1] == b"-ERR 'Stale Connection'\r\n"


async def test_server_killed() -> None:
    with running_nats() as server, anyio.fail_after(DEADLINE):
        async with NatsClient.connect(server.host, server.port) as nc:
            subscription = nc.subscribe("anything")
            nc.publish("anything", b"before the end")
            await nc.flush()
            server.process.kill()  # no goodbye: the connection just ends
            # What arrived is still delivered, then the end is reported.
            assert await subscription.next_msg() == Msg("anything", b"before the end")
            with pytest.raises(ConnectionError) as caught:
                await subscription.next_msg()
            assert isinstance(caught.value.__cause__, (EOFError, ConnectionError))
            with pytest.raises(ConnectionError):
                await nc.flush()
