"""The stress suite: whole servers under load, faults, hostile input and a soak.

A server process (:mod:`stress.server`) runs portastreams -- or asyncio's own
``start_server``, the control -- and reports on itself; load-generator
processes (:mod:`stress.loadgen`) run the client scenarios
(:mod:`stress.scenarios`); the experiments (:mod:`stress.experiments`) check
every byte, every descriptor and task, and every log record.
``python -m stress`` runs them and writes a report; the test suite runs the
short profile; :mod:`stress.fuzz` is the server fuzz target.
"""
