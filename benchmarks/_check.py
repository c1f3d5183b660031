"""Verification helpers shared by every client implementation."""

from __future__ import annotations

from collections.abc import Sequence


class Mismatch(AssertionError):
    """The client received something other than the pattern: the run is invalid."""


def check_batch(batch: Sequence[bytes | bytearray], block: bytes, done: int) -> int:
    """Check that ``batch`` (items received in order) starts one period of ``block``.

    ``done`` is how many items came before the batch (for the error message).
    Returns ``done + len(batch)``. A full batch must equal ``block``; the last,
    partial batch must be a prefix of it.
    """
    joined = b"".join(batch)
    if not block.startswith(joined):
        raise Mismatch(
            f"items {done}..{done + len(batch)} differ from the pattern "
            f"({len(joined)} bytes, first {joined[:32]!r})"
        )
    return done + len(batch)


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise Mismatch(message)


def expect_count(what: str, got: int, wanted: int) -> None:
    if got != wanted:
        raise Mismatch(f"{what}: got {got:,}, expected {wanted:,}")
