"""The backends tests run on: every test on all three, unless it is about one by nature."""

from __future__ import annotations

import pytest

#: asyncio, asyncio + uvloop and trio, as ``anyio_backend`` values.
BACKENDS = [
    pytest.param(("asyncio", {}), id="asyncio"),
    pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    pytest.param(("trio", {}), id="trio"),
]

#: For tests about asyncio by nature (asyncio protocols and transports).
ASYNCIO_BACKENDS = BACKENDS[:2]

#: For tests about trio by nature.
TRIO_BACKEND = BACKENDS[2:]
