"""Throwaway certificates (made by trustme) as files, for real TLS programs.

nginx, ``openssl s_server``/``s_client`` and ``socat`` read PEM files; the
tests' own ends use :class:`ssl.SSLContext` objects made from the same
authority.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

#: The names the server certificate is valid for (not 127.0.0.1: tests that
#: connect by address must pass ``server_hostname``).
SERVER_NAME = "localhost"
#: The client certificate's name (an e-mail address, as trustme makes them).
CLIENT_NAME = "client@example.com"


@dataclass(frozen=True)
class Certificates:
    """One authority, a server certificate for ``localhost``, a client certificate."""

    authority: trustme.CA
    server: trustme.LeafCert
    client: trustme.LeafCert
    ca_file: Path  # the authority's certificate
    server_cert_file: Path  # the server's certificate chain
    server_key_file: Path
    client_file: Path  # the client's private key and certificate chain, one file

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts the authority (and nothing else)."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def client_context_with_certificate(self) -> ssl.SSLContext:
        """:meth:`client_context`, presenting the client certificate."""
        context = self.client_context()
        self.client.configure_cert(context)
        return context

    def server_context(
        self, *, require_client_certificate: bool = False
    ) -> ssl.SSLContext:
        """A server context for ``localhost``; optionally requiring a client
        certificate signed by the authority."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server.configure_cert(context)
        if require_client_certificate:
            context.verify_mode = ssl.CERT_REQUIRED
            self.authority.configure_trust(context)
        return context


def make_certificates(directory: Path) -> Certificates:
    """Make an authority and two certificates, and write them under ``directory``."""
    authority = trustme.CA()
    server = authority.issue_cert(SERVER_NAME)
    client = authority.issue_cert(CLIENT_NAME)
    ca_file = directory / "ca.pem"
    server_cert_file = directory / "server-cert.pem"
    server_key_file = directory / "server-key.pem"
    client_file = directory / "client.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    server_cert_file.write_bytes(
        b"".join(pem.bytes() for pem in server.cert_chain_pems)
    )
    server.private_key_pem.write_to_path(str(server_key_file))
    client.private_key_and_cert_chain_pem.write_to_path(str(client_file))
    return Certificates(
        authority,
        server,
        client,
        ca_file,
        server_cert_file,
        server_key_file,
        client_file,
    )
