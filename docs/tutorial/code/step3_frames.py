"""Step 3: a framed protocol: a 4-byte length, then that many bytes of payload."""

import struct

import anyio

import portastreams

HEADER = struct.Struct("!I")  # the payload length, 32-bit unsigned, big-endian
MAX_PAYLOAD = 1024 * 1024


def write_frame(writer: portastreams.StreamWriter, payload: bytes) -> None:
    writer.write(HEADER.pack(len(payload)) + payload)


async def read_frame(reader: portastreams.StreamReader) -> bytes | None:
    """Return the next payload, or None if the stream ends between frames."""
    try:
        header = await reader.readexactly(HEADER.size)
    except portastreams.IncompleteReadError as exc:
        if exc.partial:
            raise  # the stream ended in the middle of a header
        return None  # a clean end of stream
    (length,) = HEADER.unpack(header)
    if length > MAX_PAYLOAD:
        raise ValueError(f"a {length}-byte frame is too large")
    return await reader.readexactly(length)


async def handle_reverse(
    reader: portastreams.StreamReader, writer: portastreams.StreamWriter
) -> None:
    try:
        while (payload := await read_frame(reader)) is not None:
            write_frame(writer, payload[::-1])
    except portastreams.IncompleteReadError as exc:
        message = f"truncated frame: {len(exc.partial)} of {exc.expected} bytes"
        write_frame(writer, message.encode())


async def main(port: int = 0) -> list[bytes]:
    server = await portastreams.start_server(handle_reverse, "127.0.0.1", port)
    port = server.sockets[0].getsockname()[1]
    async with server:
        reader, writer = await portastreams.open_connection("127.0.0.1", port)
        for payload in [b"stressed", b"", b"line\nbreaks\x00and nulls"]:
            write_frame(writer, payload)
        writer.write(HEADER.pack(10) + b"abc")  # announces 10 bytes, sends 3...
        writer.write_eof()  # ...and ends the stream
        replies = []
        while (reply := await read_frame(reader)) is not None:
            replies.append(reply)
        writer.close()
        await writer.wait_closed()
    for reply in replies:
        print(reply)
    return replies


if __name__ == "__main__":
    anyio.run(main)
