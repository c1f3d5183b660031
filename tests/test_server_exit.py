"""Leaving ``async with server:`` early: cancelled on entry, or the body raises.

Regression tests for two ``Server.__aenter__``/``__aexit__`` bugs: a
cancellation at the checkpoint inside ``__aenter__`` left the server's task
group entered ("Nursery stack corrupted" on trio, "Attempted to exit a cancel
scope that isn't the current task's current cancel scope" on asyncio); and an
exception raised by the body came out wrapped in an ``ExceptionGroup``, unlike
asyncio's ``Server`` (so ``except KeyboardInterrupt`` around a trio server
missed Ctrl+C).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable

import anyio
import pytest

import portastreams
from portastreams import StreamReader, StreamWriter

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

pytestmark = pytest.mark.anyio


async def _ignore(reader: StreamReader, writer: StreamWriter) -> None:
    pass


async def _echo_once(reader: StreamReader, writer: StreamWriter) -> None:
    writer.write(await reader.read(100))


async def _still_serves() -> None:
    """The event loop is healthy: a new server accepts and answers."""
    server = await portastreams.start_server(_echo_once, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with anyio.fail_after(10):
        async with server:
            reader, writer = await portastreams.open_connection("127.0.0.1", port)
            writer.write(b"still fine")
            assert await reader.read(100) == b"still fine"
            writer.close()
            await writer.wait_closed()


async def _body_fails_with_a_client(
    handler: Callable[[StreamReader, StreamWriter], Awaitable[None]],
    started: anyio.Event,
) -> StreamWriter:
    """Serve ``handler``; once it runs for a client, the body raises
    ``LookupError``, which must come out bare. Returns the client's writer."""
    server = await portastreams.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    writers: list[StreamWriter] = []

    async def serve_and_fail() -> None:
        async with server:
            _, writer = await portastreams.open_connection("127.0.0.1", port)
            writers.append(writer)
            await started.wait()
            raise LookupError("body failed")

    with pytest.raises(LookupError) as info:
        await serve_and_fail()
    assert type(info.value) is LookupError
    return writers[0]


async def test_cancelled_while_entering(anyio_backend: object) -> None:
    server = await portastreams.start_server(_ignore, "127.0.0.1", 0)
    body_ran = False
    with anyio.CancelScope() as scope:
        scope.cancel()
        async with server:
            body_ran = True
    assert scope.cancelled_caught
    assert not body_ran
    assert not server.is_serving()
    assert server.sockets == ()
    with anyio.fail_after(10):
        await server.wait_closed()
    await _still_serves()


async def test_body_exception_is_not_wrapped(anyio_backend: object) -> None:
    server = await portastreams.start_server(_ignore, "127.0.0.1", 0)
    with pytest.raises(KeyError) as info:
        async with server:
            raise KeyError("from the body")
    assert info.value.args == ("from the body",)
    assert server.sockets == ()
    await _still_serves()


async def test_body_exception_cancels_running_handlers(anyio_backend: object) -> None:
    started = anyio.Event()
    cancelled = False

    async def wait_forever(reader: StreamReader, writer: StreamWriter) -> None:
        nonlocal cancelled
        started.set()
        try:
            await reader.read()
        except anyio.get_cancelled_exc_class():
            cancelled = True
            raise

    with anyio.fail_after(10):
        writer = await _body_fails_with_a_client(wait_forever, started)
        assert cancelled
        writer.close()
        await writer.wait_closed()


async def test_a_handler_that_swallows_one_cancellation_still_ends(
    anyio_backend: object,
) -> None:
    # Cancelling a server's handlers is not a single request: a handler that
    # catches the cancellation and awaits again is cancelled again there (as
    # in a cancelled AnyIO scope), so leaving the server never hangs on it.
    started = anyio.Event()
    cancellations = 0

    async def stubborn(reader: StreamReader, writer: StreamWriter) -> None:
        nonlocal cancellations
        started.set()
        try:
            await anyio.sleep(60)
        except anyio.get_cancelled_exc_class():
            cancellations += 1
        try:
            await anyio.sleep(60)
        except anyio.get_cancelled_exc_class():
            cancellations += 1
            raise

    with anyio.fail_after(10):
        writer = await _body_fails_with_a_client(stubborn, started)
        writer.close()
        await writer.wait_closed()
    assert cancellations == 2


class Shutdown(BaseException):
    """Not an ``Exception``: what a handler must not swallow for the server."""


async def serve_two_clients(
    handler: Callable[[StreamReader, StreamWriter], Awaitable[None]],
    second_may_connect: anyio.Event,
) -> pytest.ExceptionInfo[BaseExceptionGroup[BaseException]]:
    """Serve ``handler``, connect two clients (the second once
    ``second_may_connect`` is set) and wait until the server fails; return
    what comes out of its ``async with`` (an exception group)."""
    server = await portastreams.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    writers: list[StreamWriter] = []

    async def serve() -> None:
        async with server:
            for _ in range(2):
                _, writer = await portastreams.open_connection("127.0.0.1", port)
                writers.append(writer)
                await second_may_connect.wait()
            await anyio.sleep(60)

    with anyio.fail_after(10):
        with pytest.raises(BaseExceptionGroup) as info:
            await serve()
        for writer in writers:
            writer.close()
            await writer.wait_closed()
    assert server.sockets == ()
    return info


async def test_a_handler_base_exception_ends_the_server(anyio_backend: object) -> None:
    # As an exception escaping any task of a task group: the server stops, the
    # other handlers are cancelled, and the exception comes out of the
    # ``async with`` (in a group, since the body did not raise it).
    others_cancelled = anyio.Event()
    second_started = anyio.Event()
    connections = 0

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        nonlocal connections
        connections += 1
        if connections == 1:
            try:
                second_started.set()
                await anyio.sleep(60)
            except anyio.get_cancelled_exc_class():
                others_cancelled.set()
                raise
        await second_started.wait()
        raise Shutdown

    raised = await serve_two_clients(handler, second_started)
    assert raised.group_contains(Shutdown)
    assert others_cancelled.is_set()
    await _still_serves()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_on_asyncio_handlers_are_plain_tasks_under_one_supervisor(
    anyio_backend: object,
) -> None:
    # The design (docs/architecture.rst): no AnyIO task per connection on
    # asyncio -- a plain asyncio.Task per handler, one supervisor task.
    import asyncio

    seen: list[str] = []
    both = anyio.Event()

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        seen.append(task.get_name())
        if len(seen) == 2:
            both.set()
        await both.wait()

    server = await portastreams.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with anyio.fail_after(10):
        async with server:
            writers = [
                (await portastreams.open_connection("127.0.0.1", port))[1]
                for _ in range(2)
            ]
            await both.wait()
            names = [task.get_name() for task in asyncio.all_tasks()]
            assert names.count("portastreams handlers") == 1
            for writer in writers:
                writer.close()
                await writer.wait_closed()
    assert seen == ["portastreams handler", "portastreams handler"]


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_on_trio_handlers_are_tasks_of_one_nursery(anyio_backend: object) -> None:
    # The design (docs/architecture.rst): on trio, handlers are trio tasks of
    # a nursery held open by one task of the server's task group.
    import trio

    seen: list[tuple[str, str]] = []
    both = anyio.Event()

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        task = trio.lowlevel.current_task()
        assert task.parent_nursery is not None
        seen.append((task.name, task.parent_nursery.parent_task.name))
        if len(seen) == 2:
            both.set()
        await both.wait()

    server = await portastreams.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with anyio.fail_after(10):
        async with server:
            writers = [
                (await portastreams.open_connection("127.0.0.1", port))[1]
                for _ in range(2)
            ]
            await both.wait()
            for writer in writers:
                writer.close()
                await writer.wait_closed()
    assert seen == [("portastreams handler", "portastreams handlers")] * 2


async def test_a_later_base_exception_does_not_replace_the_first(
    anyio_backend: object,
) -> None:
    # The first handler's BaseException ends the server; another handler that
    # raises one while it is being cancelled adds to it, never replaces it.
    first_started = anyio.Event()
    connections = 0

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        nonlocal connections
        connections += 1
        if connections == 1:
            try:
                first_started.set()
                await anyio.sleep(60)
            except anyio.get_cancelled_exc_class():
                raise Shutdown("second") from None
        await first_started.wait()
        raise Shutdown("first")

    raised = await serve_two_clients(handler, first_started)
    assert raised.group_contains(Shutdown, match="^first$")


async def test_leaving_waits_for_the_last_handler_then_returns(
    anyio_backend: object,
) -> None:
    # The body ends while one handler still runs: leaving the server waits
    # for it, and returns as soon as it ends.
    started = anyio.Event()
    release = anyio.Event()
    ended: list[str] = []

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        started.set()
        await release.wait()
        ended.append("handler")

    server = await portastreams.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def release_later() -> None:
        await anyio.sleep(0.2)
        release.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            async with server:
                _, writer = await portastreams.open_connection("127.0.0.1", port)
                await started.wait()
                group.start_soon(release_later)
            ended.append("server")
        writer.close()
        await writer.wait_closed()
    assert ended == ["handler", "server"]
