"""Connection information in both vocabularies: asyncio's and AnyIO's.

asyncio code asks ``writer.get_extra_info("peername")``; AnyIO code asks
``stream.extra(SocketAttribute.remote_port)``. Every connection answers both,
whichever path built it, from the same two sources: the socket and, over
TLS, the ``ssl.SSLObject``.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Mapping
from typing import Any, Final

from anyio.abc import ByteStream, SocketAttribute
from anyio.streams.tls import TLSAttribute

__all__ = [
    "connection_extra_info",
    "socket_extra_attributes",
    "tls_extra_attributes",
    "tls_extra_info",
]

#: asyncio's names for TLS information.
TLS_NAMES: Final = frozenset(
    {"ssl_object", "sslcontext", "peercert", "cipher", "compression"}
)


#: Local addresses seen lately: connections with equal ones share one object
#: (a server's connections mostly have its own address as their sockname).
_shared_addresses: dict[object, object] = {}
SHARED_ADDRESSES_MAX: Final = 64


def _shared(address: object) -> object:
    """An object equal to ``address``, the same one for equal addresses."""
    shared = _shared_addresses.setdefault(address, address)
    if len(_shared_addresses) > SHARED_ADDRESSES_MAX:
        _shared_addresses.clear()
    return shared


def connection_extra_info(stream: ByteStream) -> dict[str, object]:
    """``socket``/``peername``/``sockname``, read once so they outlive the socket.

    Equal socknames share one tuple, and a peer's host one string: a few
    hundred bytes less on each of a server's idle connections.
    """
    info: dict[str, object] = {}
    sock = stream.extra(SocketAttribute.raw_socket, None)
    if sock is None:
        return info
    info["socket"] = sock
    try:
        info["sockname"] = _shared(sock.getsockname())
        peername = sock.getpeername()
    except OSError:  # pragma: no cover - a socket that died before we looked
        return info
    if type(peername) is tuple:  # (host, port, ...): the port differs
        peername = (_shared(peername[0]), *peername[1:])
    info["peername"] = peername
    return info


def tls_extra_info(ssl_object: ssl.SSLObject, name: str, default: object) -> object:
    """asyncio's ``get_extra_info`` for the TLS names (known even when None)."""
    if name == "ssl_object":
        return ssl_object
    if name == "sslcontext":
        return ssl_object.context
    if name == "peercert":
        return ssl_object.getpeercert()
    if name == "cipher":
        return ssl_object.cipher()
    if name == "compression":
        return ssl_object.compression()
    return default


def _ip_address(address: Any) -> Any:
    """AnyIO's form of a socket address: ``(host, port)`` for IPv4 and IPv6."""
    if isinstance(address, tuple) and len(address) > 2:
        return address[:2]
    return address


def socket_extra_attributes(sock: Any) -> Mapping[Any, Callable[[], Any]]:
    """AnyIO's ``SocketAttribute`` values for a connected socket."""
    if sock is None:
        return {}
    local = _ip_address(sock.getsockname())
    try:
        remote = _ip_address(sock.getpeername())
    except OSError:  # pragma: no cover - a socket that died before we looked
        remote = None
    attributes: dict[Any, Callable[[], Any]] = {
        SocketAttribute.family: lambda: sock.family,
        SocketAttribute.local_address: lambda: local,
        SocketAttribute.raw_socket: lambda: sock,
    }
    if remote is not None:
        attributes[SocketAttribute.remote_address] = lambda: remote
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        attributes[SocketAttribute.local_port] = lambda: local[1]
        if remote is not None:
            attributes[SocketAttribute.remote_port] = lambda: remote[1]
    return attributes


def tls_extra_attributes(
    ssl_object: ssl.SSLObject, server_side: bool
) -> Mapping[Any, Callable[[], Any]]:
    """AnyIO's ``TLSAttribute`` values for an established TLS session."""
    return {
        TLSAttribute.alpn_protocol: ssl_object.selected_alpn_protocol,
        TLSAttribute.channel_binding_tls_unique: lambda: ssl_object.get_channel_binding(
            "tls-unique"
        ),
        TLSAttribute.cipher: ssl_object.cipher,
        TLSAttribute.peer_certificate: lambda: ssl_object.getpeercert(False),
        TLSAttribute.peer_certificate_binary: lambda: ssl_object.getpeercert(True),
        TLSAttribute.server_side: lambda: server_side,
        TLSAttribute.shared_ciphers: lambda: (
            ssl_object.shared_ciphers() if server_side else None
        ),
        TLSAttribute.ssl_object: lambda: ssl_object,
        TLSAttribute.standard_compatible: lambda: False,
        TLSAttribute.tls_version: ssl_object.version,
    }


def native_extra_attributes(
    get_extra_info: Callable[[str], Any], server_side: bool
) -> Mapping[Any, Callable[[], Any]]:
    """AnyIO typed attributes for an asyncio transport, from its extra info."""
    try:
        sock = get_extra_info("socket")
        attributes = dict(socket_extra_attributes(sock))
    except (OSError, AttributeError):  # a closed transport (uvloop's fail)
        return {}
    ssl_object = get_extra_info("ssl_object")
    if ssl_object is not None:
        attributes.update(tls_extra_attributes(ssl_object, server_side))
    return attributes
