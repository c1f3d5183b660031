"""examples/nats_client.py as programs talking through a real nats-server.

A subscriber and a publisher, and a responder and a requester, each pair on
two different backends, so that every backend talks to every other one
through the server.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from nats_server import NatsServer, running_nats
from subprocesses import BACKEND_NAMES, EXAMPLES, Background, describe, run_python

SCRIPT = str(EXAMPLES / "nats_client.py")

#: (one side, the other side): each backend with the next one.
PAIRS = [
    (first, BACKEND_NAMES[(i + 1) % len(BACKEND_NAMES)])
    for i, first in enumerate(BACKEND_NAMES)
]


@pytest.fixture(scope="module")
def nats() -> Iterator[NatsServer]:
    with running_nats() as server:
        yield server


def nats_client(server: NatsServer, backend: str, *args: str) -> list[str]:
    return [SCRIPT, "--backend", backend, "--port", str(server.port), *args]


@pytest.mark.parametrize(("sub_backend", "pub_backend"), PAIRS)
def test_sub_and_pub(nats: NatsServer, sub_backend: str, pub_backend: str) -> None:
    messages = ["héllo", "two words", "the last one"]
    subject = f"example.{sub_backend}"
    with Background(nats_client(nats, sub_backend, "sub", subject, "3")) as sub:
        sub.wait_for_line(lambda line: line == f"subscribed to {subject}\n")
        for message in messages:
            result = run_python(nats_client(nats, pub_backend, "pub", subject, message))
            assert result.returncode == 0, describe(result)
            size = len(message.encode())
            assert result.stdout == f"published {size} bytes on {subject}\n"
            assert result.stderr == ""
        sub.wait_for_line(lambda line: "the last one" in line)
        assert sub.process.wait(timeout=30) == 0, sub.output()
    assert sub.stdout_lines[1:] == [f"[{subject}] {m}\n" for m in messages]
    assert sub.stderr_lines == []


@pytest.mark.parametrize(("reply_backend", "request_backend"), PAIRS)
def test_request_and_reply(
    nats: NatsServer, reply_backend: str, request_backend: str
) -> None:
    subject = f"reverse.{reply_backend}"
    with Background(nats_client(nats, reply_backend, "reply", subject, "1")) as replier:
        replier.wait_for_line(lambda line: line == f"answering on {subject}\n")
        result = run_python(
            nats_client(nats, request_backend, "request", subject, "stressed")
        )
        assert result.returncode == 0, describe(result)
        assert result.stdout == "desserts\n"
        assert result.stderr == ""
        assert replier.process.wait(timeout=30) == 0, replier.output()
    assert replier.stderr_lines == []


def test_refused_connection() -> None:
    with running_nats(args=["--auth", "s3cret"]) as guarded:
        result = run_python(nats_client(guarded, "trio", "pub", "x", "y"))
    assert result.returncode == 1, describe(result)
    assert result.stdout == ""
    assert result.stderr == "-ERR Authorization Violation\n"
