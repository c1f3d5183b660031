"""The peer process: plain blocking stdlib sockets, as fast as CPython gets.

``python -m benchmarks.peer MODE SIZE [--cpu N]`` listens on an ephemeral
loopback port, prints ``PORT <n>`` and serves connections until its stdin
closes. Every contender of a round meets the same peer, so the peer's cost is
the same for all of them. Modes:

* ``lines`` / ``frames`` / ``bulk``: send ``SIZE`` bytes of the pattern in
  ~4 MiB ``sendall`` calls, half-close, wait for the client to close;
* ``pingpong``: echo (``recv`` + ``sendall``) until the client closes;
* ``fanin``: echo on many connections at once, from one ``selectors`` loop;
* ``upload``: receive until EOF, checking each 1 MiB block against the
  pattern, then reply ``b"<bytes> <checksum>\\n"`` (see :mod:`.patterns`).

Connections are served one at a time, except in ``fanin`` mode.
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import sys
import threading
import zlib

from . import patterns

STREAM_PERIODS = {
    "lines": patterns.line_block,
    "frames": patterns.frame_block,
    "bulk": patterns.bulk_period,
}
MODES = (*STREAM_PERIODS, "pingpong", "fanin", "upload")


def _configure(conn: socket.socket) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _drain_until_closed(conn: socket.socket) -> None:
    while conn.recv(65536):
        pass


def serve_stream(conn: socket.socket, block: bytes, total: int) -> None:
    """Send ``total`` bytes of the stream whose send block is ``block``."""
    full, rest = divmod(total, len(block))
    for _ in range(full):
        conn.sendall(block)
    if rest:
        conn.sendall(memoryview(block)[:rest])
    conn.shutdown(socket.SHUT_WR)
    _drain_until_closed(conn)


def serve_echo(conn: socket.socket) -> None:
    recv = conn.recv
    sendall = conn.sendall
    while data := recv(65536):
        sendall(data)


def serve_upload(conn: socket.socket) -> None:
    """Sink an upload, verifying it block by block; reply with size and checksum."""
    expected = patterns.upload_block()
    expected_sum = zlib.adler32(expected)
    size = patterns.UPLOAD_BLOCK
    buffer = bytearray(size)
    view = memoryview(buffer)
    total = 0
    checksum = 1
    eof = False
    while not eof:
        got = 0
        while got < size:
            n = conn.recv_into(view[got:], size - got, socket.MSG_WAITALL)
            if n == 0:
                eof = True
                break
            got += n
        if not got:
            break
        total += got
        if got == size and buffer == expected:
            block_sum = expected_sum
        else:
            block_sum = zlib.adler32(view[:got])
        checksum = patterns.fold_checksum(checksum, block_sum)
    conn.sendall(b"%d %d\n" % (total, checksum))
    _drain_until_closed(conn)


def serve_fanin(listener: socket.socket) -> None:
    """Echo on every connection from one selectors loop (never returns)."""
    selector = selectors.DefaultSelector()
    listener.setblocking(False)
    selector.register(listener, selectors.EVENT_READ, None)
    while True:
        for key, _ in selector.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if key.data is None:
                while True:
                    try:
                        conn, _ = sock.accept()
                    except BlockingIOError:
                        break
                    conn.setblocking(False)
                    _configure(conn)
                    selector.register(conn, selectors.EVENT_READ, True)
                continue
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                selector.unregister(sock)
                sock.close()
                continue
            try:
                sent = sock.send(data)
                if sent < len(data):  # never for 16-byte messages, but be correct
                    sock.setblocking(True)
                    sock.sendall(data[sent:])
                    sock.setblocking(False)
            except OSError:
                selector.unregister(sock)
                sock.close()


def serve(mode: str, size: int, listener: socket.socket) -> None:
    if mode == "fanin":
        serve_fanin(listener)
        return
    block = STREAM_PERIODS[mode]() if mode in STREAM_PERIODS else b""
    if block:
        block = patterns.send_block(block)
    while True:
        conn, _ = listener.accept()
        _configure(conn)
        try:
            if block:
                serve_stream(conn, block, size)
            elif mode == "pingpong":
                serve_echo(conn)
            else:
                serve_upload(conn)
        except OSError as exc:  # a client that failed; the runner reports it
            print(f"peer: {mode}: {exc!r}", file=sys.stderr, flush=True)
        finally:
            conn.close()


def _exit_when_stdin_closes() -> None:
    sys.stdin.buffer.read()
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peer")
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("size", type=int, help="bytes to send (stream modes)")
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    threading.Thread(target=_exit_when_stdin_closes, daemon=True).start()
    print(f"PORT {listener.getsockname()[1]}", flush=True)
    serve(args.mode, args.size, listener)
    return 0


if __name__ == "__main__":
    sys.exit(main())
