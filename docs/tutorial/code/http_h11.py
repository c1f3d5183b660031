"""HTTP/1.1 with h11: a server, and a client that keeps its connection open.

Needs h11 (pip install h11): python http_h11.py
"""

import anyio
import h11

import portastreams


async def next_event(
    connection: h11.Connection, reader: portastreams.StreamReader
) -> h11.Event:
    """The peer's next event: h11 parses, the reader fetches what it needs."""
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            # b"" at the end of the stream tells h11 the peer closed.
            connection.receive_data(await reader.read(65536))
        elif isinstance(event, h11.Event):
            return event
        else:  # h11.PAUSED: the peer sent its next request early
            raise RuntimeError("call start_next_cycle() first")


async def handle(
    reader: portastreams.StreamReader, writer: portastreams.StreamWriter
) -> None:
    connection = h11.Connection(h11.SERVER)
    while True:
        request = await next_event(connection, reader)
        if not isinstance(request, h11.Request):
            return  # h11.ConnectionClosed: the client is done
        while not isinstance(await next_event(connection, reader), h11.EndOfMessage):
            pass  # (a GET has no body; skip it if one came)
        body = b"You asked for " + request.target + b"\n"
        headers = [("Content-Type", "text/plain")]
        if request.target != b"/chunked":
            headers.append(("Content-Length", str(len(body))))
        # Without a Content-Length, h11 sends the body in chunks.
        writer.write(connection.send(h11.Response(status_code=200, headers=headers)))
        for piece in (body[:9], body[9:]):
            writer.write(connection.send(h11.Data(data=piece)))
        writer.write(connection.send(h11.EndOfMessage()))
        await writer.drain()
        if connection.our_state is h11.MUST_CLOSE:
            return  # the client asked for Connection: close
        connection.start_next_cycle()  # keep-alive: wait for the next request


async def get(
    connection: h11.Connection,
    reader: portastreams.StreamReader,
    writer: portastreams.StreamWriter,
    target: str,
) -> tuple[int, bytes, bytes]:
    """GET ``target``; returns the status, how the body was framed, the body.

    The request goes in a single write, without a drain(): it is small.
    """
    request = h11.Request(method="GET", target=target, headers=[("Host", "localhost")])
    writer.write(connection.send(request))
    writer.write(connection.send(h11.EndOfMessage()))
    response = await next_event(connection, reader)
    assert isinstance(response, h11.Response)
    body = b""
    while isinstance(event := await next_event(connection, reader), h11.Data):
        body += event.data
    connection.start_next_cycle()  # the same connection, for the next request
    headers = dict(response.headers)  # names in lower case
    if b"content-length" in headers:
        return response.status_code, b"length " + headers[b"content-length"], body
    return response.status_code, headers[b"transfer-encoding"], body


async def main(port: int = 0) -> list[tuple[int, bytes, bytes]]:
    server = await portastreams.start_server(handle, "127.0.0.1", port)
    port = server.sockets[0].getsockname()[1]
    async with server:
        reader, writer = await portastreams.open_connection("127.0.0.1", port)
        connection = h11.Connection(h11.CLIENT)
        responses = [
            await get(connection, reader, writer, "/hello"),
            await get(connection, reader, writer, "/chunked"),
        ]
        writer.close()
        await writer.wait_closed()
    for response in responses:
        print(response)
    return responses


if __name__ == "__main__":
    anyio.run(main)
