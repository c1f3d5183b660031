from __future__ import annotations

import pytest

import portastreams

pytestmark = pytest.mark.anyio


async def test_fed_reader_reads_a_line(backend_name: str) -> None:
    reader = portastreams.StreamReader()
    reader.feed_data(b"hello\nrest")
    reader.feed_eof()
    assert await reader.readline() == b"hello\n"
    assert await reader.read() == b"rest"
    assert reader.at_eof()
