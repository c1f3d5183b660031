"""portastreams benchmark suite: clients against a C-speed peer, servers under real load generators.

Run it from the checkout with ``python -m benchmarks --help`` or ``nox -s bench``.
Every measurement runs one *contender* (a stream API on one backend) through
one *workload* in a fresh process, in one *placement* of its two processes
(:mod:`.placements`: both on one CPU, one CPU each, or unpinned):

* client workloads: a client process against a peer process that uses plain
  blocking stdlib sockets, so the only thing that differs between contenders
  is the client-side stream implementation;
* server workloads: a server process (the same handler function for
  ``asyncio.start_server`` and ``portastreams.start_server``) under
  ``redis-benchmark`` or ``wrk``.

Modules: :mod:`.patterns` (the deterministic data both sides agree on),
:mod:`.peer` (the peer process), :mod:`.workloads` and :mod:`.contenders`
(what is measured), :mod:`.client` (one client measurement in one process),
:mod:`.runner` (peers, client processes, summaries); :mod:`.protocols` (what
the servers answer), :mod:`.server` (one server in one process),
:mod:`.loadgen` (the load generators), :mod:`.server_check` (the harness's
own checks of a server), :mod:`.serving` (server measurements, summaries);
:mod:`.report` and :mod:`.server_report` (tables, JSON, plot, rst) and
:mod:`.__main__` (the command line).
"""
