"""Benchmarks of snapshot, restore and download against the datastore's floor.

``python -m benchmarks`` runs every measurement of issue 5 on the SDK's
datastore stub, each next to a hand-written floor in the same process, and
prints a table of ratios (see ``benchmarks/RESULTS.md`` and
``python -m benchmarks --help``).

``python -m benchmarks --simulate`` runs issue 11's: snapshot and restore in
virtual time on the stub wrapped in a latency model, with K workers, against
an ideal range-parallel reader (``simmain``, ``simulate``; the instrument is
``simclock``, ``simstub`` and ``simwork``, checked by ``simcheck``).
"""

from lovely_gae import async_

__all__ = ['noop']


@async_.task
def noop(*args):
    """The task of the queue-overhead measurement: it does nothing."""
