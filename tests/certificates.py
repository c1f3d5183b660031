"""One test CA for the whole run, and the TLS contexts made from it."""

from __future__ import annotations

import functools
import ssl

import trustme


@functools.cache
def test_ca() -> trustme.CA:
    return trustme.CA()


@functools.cache
def server_context() -> ssl.SSLContext:
    """A server context with a certificate for ``localhost`` and ``127.0.0.1``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    test_ca().issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


@functools.cache
def client_context() -> ssl.SSLContext:
    """A verifying client context that trusts the test CA."""
    context = ssl.create_default_context()
    test_ca().configure_trust(context)
    return context
