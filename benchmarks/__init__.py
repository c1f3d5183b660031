"""portastreams benchmark suite: client-side stream APIs against a C-speed peer.

Run it from the checkout with ``python -m benchmarks --help`` or ``nox -s bench``.
Every measurement runs one *contender* (a stream API on one backend) through
one *workload* in a fresh client process, against a peer process that uses
plain blocking stdlib sockets, so the only thing that differs between
contenders is the client-side stream implementation.

Modules: :mod:`.patterns` (the deterministic data both sides agree on),
:mod:`.peer` (the peer process), :mod:`.workloads` and :mod:`.contenders`
(what is measured), :mod:`.client` (one measurement in one process), and
:mod:`.__main__` (the runner, the table, the JSON and the plot).
"""
