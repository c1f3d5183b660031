"""What an experiment produces: one :class:`Row` per server, with its failures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Final

#: Server implementations: portastreams (the subject) and the backend's own
#: server (the control: asyncio's ``start_server``; on trio, a hand-written
#: ``trio.serve_listeners`` server, see :mod:`stress.trio_control`).
SUBJECT: Final = "portastreams"
CONTROL: Final = "asyncio"


@dataclass(frozen=True)
class Target:
    """One server: an implementation on a backend."""

    impl: str
    backend: str

    @property
    def is_control(self) -> bool:
        return self.impl == CONTROL

    @property
    def label(self) -> str:
        if self.is_control and self.backend == "trio":
            return "trio.serve_listeners, hand-written buffer (control)"
        if self.is_control:
            return f"asyncio.start_server on {self.backend} (control)"
        return f"portastreams on {self.backend}"


SUBJECTS: Final = tuple(Target(SUBJECT, b) for b in ("asyncio", "uvloop", "trio"))
CONTROLS: Final = tuple(Target(CONTROL, b) for b in ("asyncio", "uvloop"))


@dataclass
class Row:
    """One experiment on one server: its figures and what went wrong."""

    experiment: str
    target: Target
    figures: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: Why this experiment cannot run on this server (then nothing is judged).
    not_applicable: str | None = None

    def fail(self, text: str) -> None:
        self.failures.append(text)

    def check(self, condition: bool, text: str) -> None:
        if not condition:
            self.fail(text)

    def describe(self) -> str:
        lines = [f"{self.experiment}: {self.target.label}"]
        lines += [f"  {key} = {value}" for key, value in self.figures.items()]
        lines += [f"  FAILED: {failure}" for failure in self.failures]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["target"] = {"impl": self.target.impl, "backend": self.target.backend}
        return data


Formatter = Callable[[Any], str]


@dataclass(frozen=True)
class Column:
    """A figure shown in an experiment's table."""

    key: str
    header: str
    format: Formatter = str
    #: Also show the ratio to the control on the same run.
    vs_control: bool = False


def integer(value: Any) -> str:
    return "-" if value is None else f"{value:,.0f}"


def decimal(value: Any) -> str:
    return "-" if value is None else f"{value:,.1f}"


def precise(value: Any) -> str:
    return "-" if value is None else f"{value:,.2f}"


def mebibytes(value: Any) -> str:
    return "-" if value is None else f"{value / 2**20:,.1f}"


def kibibytes(value: Any) -> str:
    return "-" if value is None else f"{value / 2**10:,.1f}"


def levels(value: Any) -> str:
    if not value:
        return "none"
    return ", ".join(f"{level} {count}" for level, count in sorted(value.items()))
