"""Mutation testing of the core modules with mutmut, each against its fast tests.

``nox -s mutation`` runs this script; ``nox -s mutation -- _buffer _reader``
runs it on some modules only. For each module it

1. copies the package and the tests into ``build/mutation/<module>/`` with a
   ``pyproject.toml`` whose ``[tool.mutmut]`` section mutates that module only
   and runs only the test files listed for it in :data:`TESTS` (mutmut then
   runs, for each mutant, only those of them that call the mutated function);
2. runs that test subset once on the unmutated code: a test that already fails
   there cannot kill anything, so it is deselected and listed in the report;
3. runs ``mutmut run`` there, with a short deadline for each async test (a
   mutant that makes a test hang is killed by the deadline);
4. reads mutmut's results and prints, per module and overall, the mutants
   killed, survived and timed out, and the score: killed (and timed out) over
   all mutants except the equivalent ones.

``--sample N --seed S`` tests a seeded random sample of N mutants per module
instead of all (for the modules whose every mutant runs minutes of tests) and
reports the score with its 95% interval; ``--resume`` continues a run that
was stopped, if the package and tests are unchanged since.

Equivalent mutants -- changes no test can observe, such as a faster path
that gives the same result -- are listed with the reason in
``tools/mutation-equivalents.txt``. An entry names the function and the
changed lines, so it survives renumbering; an entry that no longer matches any
surviving mutant is reported as stale.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
WORK: Final = ROOT / "build" / "mutation"
EQUIVALENTS_FILE: Final = ROOT / "tools" / "mutation-equivalents.txt"

#: Each module and the test files that exercise it quickly. mutmut runs, for
#: each mutant, only the tests among these that call the mutated function.
TESTS: Final[dict[str, tuple[str, ...]]] = {
    "_buffer": (
        "tests/test_reader.py",
        "tests/test_reader_differential.py",
        "tests/test_buffer_edges.py",
    ),
    "_exceptions": (
        "tests/test_error_mapping.py",
        "tests/test_reader.py",
        "tests/test_reader_source.py",
        "tests/test_connections.py",
        "tests/test_contract_edges.py",
    ),
    "_reader": (
        "tests/test_reader.py",
        "tests/test_reader_edges.py",
        "tests/test_transport_edges.py",
        "tests/test_error_mapping.py",
        "tests/test_reader_source.py",
        "tests/test_reader_differential.py",
        "tests/test_reader_cancellation.py",
        "tests/test_buffer_edges.py",
        "tests/test_contract_edges.py",
        "tests/test_tls.py",
        "tests/test_faults_differential.py",
    ),
    "_transport": (
        "tests/test_transport_edges.py",
        "tests/test_server_behaviour.py",
        "tests/test_writer_edges.py",
        "tests/test_writer.py",
        "tests/test_contract.py",
        "tests/test_contract_edges.py",
        "tests/test_faults_differential.py",
        "tests/test_tls.py",
        "tests/test_tls_close.py",
    ),
    "_writer": (
        "tests/test_writer_edges.py",
        "tests/test_writer.py",
        "tests/test_writer_type_errors.py",
        "tests/test_contract.py",
        "tests/test_contract_edges.py",
        "tests/test_tls.py",
    ),
    "_server": (
        "tests/test_server_arguments.py",
        "tests/test_server_logs.py",
        "tests/test_tls.py",
        "tests/test_listeners.py",
        "tests/test_server.py",
        "tests/test_server_exit.py",
        "tests/test_server_behaviour.py",
        "tests/test_server_close_refuses.py",
        "tests/test_contract_edges.py",
    ),
    "_handler_tasks": (
        "tests/test_server_exit.py",
        "tests/test_server_logs.py",
    ),
    "_listeners": (
        "tests/test_listeners.py",
        "tests/test_server_behaviour.py",
        "tests/test_server_close_refuses.py",
        "tests/test_server.py",
        "tests/test_contract_edges.py",
    ),
    "_tls": (
        "tests/test_tls_session.py",
        "tests/test_tls.py",
        "tests/test_tls_close.py",
        "tests/test_faults_differential.py",
        "tests/test_contract_edges.py",
    ),
    "_extra": (
        "tests/test_extra.py",
        "tests/test_connections.py",
        "tests/test_tls.py",
        "tests/test_contract.py",
    ),
    "_asyncio_native": (
        "tests/test_extra.py",
        "tests/test_tls.py",
        "tests/test_writer_edges.py",
        "tests/test_server_logs.py",
        "tests/test_connections.py",
        "tests/test_writer.py",
        "tests/test_contract.py",
        "tests/test_contract_edges.py",
        "tests/test_faults_differential.py",
    ),
    "_protocol": (
        "tests/test_connections.py",
        "tests/test_writer.py",
        "tests/test_contract.py",
        "tests/test_faults_differential.py",
    ),
}

#: Tests left out of every mutation run: they pass on their own, but fail
#: under mutmut's instrumentation (its call-stack context variable comes back
#: corrupted inside uvloop's callbacks when a peer resets the connection
#: mid-write: "TypeError: can't concat int to bytes" in mutmut's trampoline).
UNDER_MUTMUT_FAILING: Final = (
    "tests/test_writer.py::test_peer_reset_during_write[uvloop-tcp]",
    "tests/test_writer.py::test_peer_reset_during_write[uvloop-unix]",
)

#: Fewer seeded runs of the slow randomised TLS close test per mutant: the
#: mutants it catches fail within a few runs.
TEST_ENVIRONMENT: Final = {"PORTASTREAMS_TLS_CLOSE_RUNS": "4"}

#: mutmut's exit codes for a mutant's test run, grouped as this report counts them.
STATUS: Final[dict[int | None, str]] = {
    0: "survived",
    1: "killed",
    3: "killed",  # pytest's internal error: the mutant broke the run
    37: "killed",  # caught by the type checker
    -11: "killed",  # a crash is a detected mutant
    -6: "killed",  # so is an abort (SIGABRT)
    -9: "killed",
    5: "no tests",
    33: "no tests",
    34: "skipped",
    36: "timeout",
    24: "timeout",
    -24: "timeout",
    152: "timeout",
    255: "timeout",
    None: "not checked",
}


@dataclass(frozen=True)
class Change:
    """A mutant, by what it changes: the function and the lines before and after."""

    function: str
    removed: tuple[str, ...]
    added: tuple[str, ...]


@dataclass
class Equivalent:
    change: Change
    reason: str
    matched: int = 0


@dataclass
class ModuleResult:
    module: str
    counts: Counter[str] = field(default_factory=Counter)
    survivors: list[tuple[str, str]] = field(default_factory=list)
    equivalent: list[tuple[str, str]] = field(default_factory=list)
    deselected: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: With sampling: how many mutants the module has (the sample is counted).
    population: int = 0
    sampling: Sampling | None = None

    @property
    def scored(self) -> int:
        """Mutants that count: all but equivalent, skipped and unchecked ones."""
        return sum(
            n
            for status, n in self.counts.items()
            if status not in ("equivalent", "skipped", "not checked")
        )

    @property
    def detected(self) -> int:
        return self.counts["killed"] + self.counts["timeout"]


def parse_equivalents(text: str) -> list[Equivalent]:
    """Read the equivalents file: blocks separated by blank lines.

    Each block is ``[function]`` (e.g. ``[portastreams._buffer.ReadBuffer.take]``),
    the changed lines as ``- old`` / ``+ new``, and ``why: reason`` (which may
    continue on following lines). Lines starting with ``#`` are comments.
    """
    entries: list[Equivalent] = []
    for block in text.split("\n\n"):
        lines = [line for line in block.splitlines() if not line.startswith("#")]
        if not any(line.strip() for line in lines):
            continue
        header = lines[0].strip()
        if not (header.startswith("[") and header.endswith("]")):
            raise ValueError(f"an entry must start with [function]: {header!r}")
        removed = tuple(line[2:].strip() for line in lines if line.startswith("- "))
        added = tuple(line[2:].strip() for line in lines if line.startswith("+ "))
        reason_lines = [
            line for line in lines if not line.startswith(("[", "- ", "+ "))
        ]
        reason = " ".join(line.strip() for line in reason_lines).removeprefix("why:")
        if not reason.strip():
            raise ValueError(f"entry {header} gives no reason (why: ...)")
        entries.append(Equivalent(Change(header[1:-1], removed, added), reason.strip()))
    return entries


def function_of(mutant: str) -> str:
    """``portastreams._buffer.xǁReadBufferǁtake__mutmut_2`` -> ``portastreams._buffer.ReadBuffer.take``."""
    mangled = mutant.partition("__mutmut_")[0]
    module, _, name = mangled.rpartition(".")
    if "ǁ" in name:
        _, cls, method = name.split("ǁ")
        return f"{module}.{cls}.{method}"
    return f"{module}.{name.removeprefix('x_')}"


def change_of(mutant: str, diff: str) -> Change:
    removed: list[str] = []
    added: list[str] = []
    for line in diff.splitlines():
        if line.startswith(("---", "+++")):
            continue
        if line.startswith("-"):
            removed.append(line[1:].strip())
        elif line.startswith("+"):
            added.append(line[1:].strip())
    return Change(function_of(mutant), tuple(removed), tuple(added))


def finalizers_left_alone(text: str) -> str:
    """``text`` with each ``__del__`` marked ``# pragma: no mutate block``.

    A finalizer runs inside the garbage collector, at any moment -- also
    while uvloop is switching contexts -- and mutmut's trampoline reads a
    context variable: under uvloop that corrupted the stats run (a
    segmentation fault in ``record_trampoline_hit``). Their mutants are
    left out of the work copy; the project's sources are not touched.
    """
    return re.sub(
        r"^(\s*def __del__\(.*:)$",
        r"\1  # pragma: no mutate block",
        text,
        flags=re.MULTILINE,
    )


#: The line of ``portastreams/__init__.py`` that renames the public classes'
#: ``__module__`` (and their methods') to ``portastreams``.
PRESENT_CALL: Final = "present(__name__, globals(), __all__)"


def without_renaming(text: str) -> str:
    """``portastreams/__init__.py`` leaving ``__module__`` as it is (no ``present()`` call).

    mutmut's trampolines find the active mutant through the ``__module__`` of
    the mutated function; renamed to ``portastreams``, the methods of the
    public classes (``StreamReader``, ``StreamWriter``, ``Server``, ...)
    never switch to their mutants and their tests are not recorded, which
    counts those mutants as "no tests". No test of a mutation run looks at
    ``__module__`` (``tests/test_public_names.py`` does, and is in none).
    """
    if text.count(PRESENT_CALL) != 1:
        raise SystemExit(
            f"portastreams/__init__.py: expected one line {PRESENT_CALL!r}"
        )
    return text.replace(PRESENT_CALL, "pass  # mutation run: no renaming")


def prepare(module: str, tests: tuple[str, ...], extra_pytest: list[str]) -> Path:
    """A fresh work directory for ``module``, with its mutmut configuration."""
    work = WORK / module
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "portastreams", work / "portastreams", ignore=ignore)
    shutil.copytree(ROOT / "tests", work / "tests", ignore=ignore)
    for name, transform in (
        (f"{module}.py", finalizers_left_alone),
        ("__init__.py", without_renaming),
    ):
        path = work / "portastreams" / name
        path.write_text(transform(path.read_text()))
    pyproject = (ROOT / "pyproject.toml").read_text()
    config = {
        "source_paths": ["portastreams"],
        "only_mutate": [f"portastreams/{module}.py"],
        "pytest_add_cli_args_test_selection": list(tests),
        "pytest_add_cli_args": ["-p", "no:cacheprovider", *extra_pytest],
    }
    section = "\n[tool.mutmut]\n" + "".join(
        f"{key} = {json.dumps(value)}\n" for key, value in config.items()
    )
    (work / "pyproject.toml").write_text(pyproject + section)
    return work


def failing_tests(
    work: Path, tests: tuple[str, ...], extra_pytest: list[str]
) -> list[str]:
    """The node ids of the subset's tests that fail on the unmutated code."""
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rfE",
            "-p",
            "no:cacheprovider",
            *extra_pytest,
            *tests,
        ],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **TEST_ENVIRONMENT},
    )
    # The short summary's lines: "FAILED tests/test_x.py::test_y[param] - ...".
    summary = re.compile(r"^(?:FAILED|ERROR) (\S+::\S+)")
    failed = [
        match.group(1)
        for line in run.stdout.splitlines()
        if (match := summary.match(line)) is not None
    ]
    return list(dict.fromkeys(failed))


@dataclass(frozen=True)
class Sampling:
    """Test ``size`` mutants drawn at random (seeded) instead of all of them.

    For the modules nearly every contract test calls (``_transport``,
    ``_asyncio_native``): each of their mutants runs minutes of tests, so all
    of them would take hours on a small machine. The sample's score estimates
    the module's, with a 95% interval.
    """

    size: int
    seed: int


def mutmut_run(work: Path, module: str, jobs: int, names: list[str]) -> int:
    """``mutmut run`` in ``work`` (on ``names`` only, if given); its exit status."""
    mutmut = Path(sys.executable).with_name("mutmut")
    with (work / "mutmut.log").open("a") as out:
        return subprocess.run(
            [str(mutmut), "run", "--max-children", str(jobs), *names],
            cwd=work,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
            env={**os.environ, **TEST_ENVIRONMENT},
        ).returncode


def meta_path(work: Path, module: str) -> Path:
    return work / "mutants" / "portastreams" / f"{module}.py.meta"


def exit_codes(work: Path, module: str) -> dict[str, int | None]:
    meta = json.loads(meta_path(work, module).read_text())
    codes: dict[str, int | None] = meta["exit_code_by_key"]
    return codes


#: A mutant name that matches no mutant: ``mutmut run`` given it generates
#: the mutants and maps the tests to them, then stops (with an assertion
#: error, "nothing matches") before testing any.
NO_MUTANT: Final = "no-such-mutant"


def sampled_names(
    work: Path, module: str, jobs: int, sampling: Sampling
) -> tuple[list[str], int]:
    """The sample's mutant names, and how many mutants the module has."""
    if not meta_path(work, module).exists():
        mutmut_run(work, module, jobs, [NO_MUTANT])
        if not meta_path(work, module).exists():
            raise SystemExit(
                f"mutmut generated no mutants for {module}; see {work / 'mutmut.log'}"
            )
    population = sorted(exit_codes(work, module))
    size = min(sampling.size, len(population))
    return random.Random(sampling.seed).sample(population, size), len(population)


def same_sources(work: Path, module: str) -> bool:
    """True if ``work`` was prepared from the package and tests as they are now."""
    for folder in ("portastreams", "tests"):
        sources = sorted(p for p in (ROOT / folder).rglob("*.py"))
        copies = sorted(p for p in (work / folder).rglob("*.py"))
        if [p.relative_to(ROOT) for p in sources] != [
            p.relative_to(work) for p in copies
        ]:
            return False
        for source in sources:
            text = source.read_text()
            if source == ROOT / "portastreams" / f"{module}.py":
                text = finalizers_left_alone(text)
            elif source == ROOT / "portastreams" / "__init__.py":
                text = without_renaming(text)
            if (work / source.relative_to(ROOT)).read_text() != text:
                return False
    return True


def run_module(
    module: str,
    jobs: int,
    extra_pytest: list[str],
    equivalents: list[Equivalent],
    *,
    sampling: Sampling | None = None,
    resume: bool = False,
) -> ModuleResult:
    started = time.monotonic()
    tests = tuple(t for t in TESTS[module] if (ROOT / t).exists())
    excluded = [
        arg
        for test in UNDER_MUTMUT_FAILING
        if test.partition("::")[0] in tests
        for arg in ("--deselect", test)
    ]
    extra_pytest = [*extra_pytest, *excluded]
    result = ModuleResult(module)
    work = WORK / module
    if resume and meta_path(work, module).exists():
        if not same_sources(work, module):
            raise SystemExit(
                f"--resume: {work} was prepared from other sources; run without --resume"
            )
        print(f"resuming {work}", flush=True)
    else:
        work = prepare(module, tests, extra_pytest)
        result.deselected = failing_tests(work, tests, extra_pytest)
        if result.deselected:
            deselect = [
                arg for test in result.deselected for arg in ("--deselect", test)
            ]
            work = prepare(module, tests, [*extra_pytest, *deselect])
    names: list[str] = []
    if sampling is not None:
        names, result.population = sampled_names(work, module, jobs, sampling)
        result.sampling = sampling
        done = exit_codes(work, module)
        # mutmut records each result as it comes: an interrupted run resumed
        # (--resume) tests only the rest of the sample.
        untested = [name for name in names if done.get(name) is None]
        if untested:
            status = mutmut_run(work, module, jobs, untested)
            if status != 0:
                raise SystemExit(
                    f"mutmut failed on {module} (exit {status}); "
                    f"see {work / 'mutmut.log'}"
                )
    else:
        status = mutmut_run(work, module, jobs, [])
        if status != 0:
            raise SystemExit(
                f"mutmut failed on {module} (exit {status}); see {work / 'mutmut.log'}"
            )
    mutmut = Path(sys.executable).with_name("mutmut")
    codes = exit_codes(work, module)
    if sampling is not None:
        codes = {name: codes[name] for name in names}
    for mutant, exit_code in sorted(codes.items()):
        state = STATUS.get(exit_code, "suspicious")
        if state == "survived":
            diff = subprocess.run(
                [str(mutmut), "show", mutant],
                cwd=work,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            change = change_of(mutant, diff)
            match = next((e for e in equivalents if e.change == change), None)
            if match is not None:
                match.matched += 1
                state = "equivalent"
                result.equivalent.append((mutant, match.reason))
            else:
                result.survivors.append((mutant, diff))
        result.counts[state] += 1
    result.seconds = time.monotonic() - started
    return result


def score(detected: int, scored: int) -> str:
    return f"{100 * detected / scored:.1f}%" if scored else "n/a"


def wilson_interval(detected: int, scored: int) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion ``detected / scored``."""
    if not scored:
        return (0.0, 1.0)
    z = 1.96
    p = detected / scored
    centre = (p + z * z / (2 * scored)) / (1 + z * z / scored)
    half = (
        z
        * math.sqrt(p * (1 - p) / scored + z * z / (4 * scored * scored))
        / (1 + z * z / scored)
    )
    return (max(0.0, centre - half), min(1.0, centre + half))


def report(results: list[ModuleResult], equivalents: list[Equivalent]) -> str:
    columns = ("killed", "timeout", "survived", "no tests", "suspicious", "equivalent")
    lines = [
        f"{'module':<16}"
        + "".join(f"{c:>11}" for c in columns)
        + f"{'score':>9}{'time':>8}"
    ]
    total: Counter[str] = Counter()
    for r in results:
        total.update(r.counts)
        lines.append(
            f"{r.module:<16}"
            + "".join(f"{r.counts[c]:>11}" for c in columns)
            + f"{score(r.detected, r.scored):>9}{r.seconds:>7.0f}s"
        )
    scored = sum(r.scored for r in results)
    detected = sum(r.detected for r in results)
    lines.append(
        f"{'all':<16}"
        + "".join(f"{total[c]:>11}" for c in columns)
        + f"{score(detected, scored):>9}"
    )
    lines.append("")
    lines.append("score = (killed + timeout) / (all mutants - equivalent - skipped)")
    for r in results:
        if r.sampling is not None:
            low, high = wilson_interval(r.detected, r.scored)
            lines.append(
                f"{r.module}: a sample of {sum(r.counts.values())} of "
                f"{r.population} mutants (seed {r.sampling.seed}); 95% interval "
                f"of the module's score: {100 * low:.1f}%-{100 * high:.1f}%"
            )
    for r in results:
        for test in r.deselected:
            lines.append(f"{r.module}: deselected, fails on the unmutated code: {test}")
        for mutant, diff in r.survivors:
            lines.append(f"\nSURVIVED {mutant}\n{diff.strip()}")
    for entry in equivalents:
        if entry.matched == 0 and any(
            entry.change.function.startswith(f"portastreams.{r.module}.")
            and r.sampling is None
            for r in results
        ):
            change = entry.change
            lines.append(
                f"\nstale equivalent entry (matches no survivor): [{change.function}]\n"
                + "\n".join(f"- {line}" for line in change.removed)
                + "\n"
                + "\n".join(f"+ {line}" for line in change.added)
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "modules", nargs="*", metavar="MODULE", help=f"some of: {' '.join(TESTS)}"
    )
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once")
    parser.add_argument(
        "--deadline",
        type=float,
        default=5.0,
        help="seconds each async test may take under a mutant (default 5)",
    )
    parser.add_argument(
        "--fail-under",
        type=float,
        default=None,
        metavar="PERCENT",
        help="exit with status 1 if the overall score is below PERCENT",
    )
    parser.add_argument(
        "--sample",
        type=int,
        default=None,
        metavar="N",
        help="test N mutants per module drawn at random, not all (an estimate)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="the seed of --sample (default 0)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the previous run of each module where it stopped "
        "(only if the package and tests are unchanged since)",
    )
    args = parser.parse_args()
    sampling = None if args.sample is None else Sampling(args.sample, args.seed)
    modules: list[str] = args.modules or list(TESTS)
    unknown = sorted(set(modules) - set(TESTS))
    if unknown:
        parser.error(f"unknown modules {unknown}; choose from {list(TESTS)}")
    extra_pytest = [
        "-o",
        f"async_test_deadline={args.deadline}",
        "-o",
        f"timeout={4 * args.deadline:g}",
    ]
    equivalents = parse_equivalents(EQUIVALENTS_FILE.read_text())
    results = []
    for module in modules:
        print(f"mutating portastreams/{module}.py ...", flush=True)
        results.append(
            run_module(
                module,
                args.jobs,
                extra_pytest,
                equivalents,
                sampling=sampling,
                resume=args.resume,
            )
        )
    text = report(results, equivalents)
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "report.txt").write_text(text + "\n")
    print(text)
    scored = sum(r.scored for r in results)
    detected = sum(r.detected for r in results)
    if args.fail_under is not None and 100 * detected < args.fail_under * scored:
        raise SystemExit(
            f"mutation score {score(detected, scored)} is below {args.fail_under:g}%"
        )


if __name__ == "__main__":
    main()
