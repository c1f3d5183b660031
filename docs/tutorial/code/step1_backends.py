"""Step 1, continued: one main(), started by each event loop's own runner."""

import sys

from step1_echo import main


def run(backend: str) -> None:
    if backend == "trio":
        import trio

        trio.run(main)
    elif backend == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        import asyncio

        asyncio.run(main())


if __name__ == "__main__":
    run(sys.argv[1] if len(sys.argv) > 1 else "asyncio")
