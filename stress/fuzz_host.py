"""Serve one of the tutorial's handlers, for the server fuzz target.

``python -m stress.fuzz_host --handler lines|frames|chat --backend B``
prints ``PORT <n>``, serves until stdin closes, then closes the server,
waits for its handlers, prints ``LOGS <json>`` (log records by
``logger/LEVEL``, the handler failures apart) and exits.

The handlers are the tutorial's own (``docs/tutorial/code``): the line
protocol of step 2, the framed protocol of step 3, the chat of step 6.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import anyio

import portastreams

from .instruments import log_key
from .processes import ROOT
from .server import BACKENDS, HOST

#: handler name -> (tutorial module, handler function, reader limit).
HANDLERS: dict[str, tuple[str, str, int]] = {
    "lines": ("step2_lines", "handle_commands", 64),
    "frames": ("step3_frames", "handle_reverse", 2**16),
    "chat": ("step6_shutdown", "handle_chat", 2**16),
}

HANDLER_FAILURE = "Unhandled exception in client_connected_cb"


class Counting(logging.Handler):
    """Counts records by ``logger/LEVEL``; handler failures under their own key."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(HANDLER_FAILURE):
            self.counts["handler failure"] += 1
        else:
            self.counts[log_key(record)] += 1


def load_handler(name: str) -> tuple[Callable[..., Any], int]:
    module_name, function, limit = HANDLERS[name]
    sys.path.insert(0, str(ROOT / "docs" / "tutorial" / "code"))
    handler: Callable[..., Any] = getattr(
        importlib.import_module(module_name), function
    )
    return handler, limit


async def serve(handler: Callable[..., Any], limit: int) -> None:
    server = await portastreams.start_server(handler, HOST, 0, limit=limit)
    async with server:
        print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
        # Until stdin closes: wait_readable and read, never blocking the loop.
        os.set_blocking(0, False)
        while True:
            await anyio.wait_readable(0)
            try:
                if not os.read(0, 4096):
                    break
            except BlockingIOError:
                continue


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stress.fuzz_host")
    parser.add_argument("--handler", choices=list(HANDLERS), required=True)
    parser.add_argument("--backend", choices=list(BACKENDS), required=True)
    args = parser.parse_args(argv)
    counting = Counting()
    logging.getLogger().addHandler(counting)
    logging.getLogger().setLevel(logging.DEBUG)
    logging.captureWarnings(True)
    handler, limit = load_handler(args.handler)
    backend, options = BACKENDS[args.backend]
    anyio.run(serve, handler, limit, backend=backend, backend_options=options)
    print(f"LOGS {json.dumps(dict(counting.counts))}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
