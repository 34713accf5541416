"""How long ``lovely-gae --help`` takes: what a new user waits for first.

Each command runs in a process of its own, as a shell starts it, a few
times; the median counts, beside the floor of a Python that does nothing
(``python -c pass``). The target is absolute: under ``TARGET`` seconds,
which the SDK (grpc, protobuf, ...) alone would take several times over.
"""
import os
import shutil
import statistics
import subprocess
import sys
import time

__all__ = ['TARGET', 'COMMANDS', 'measure', 'text']

#: Seconds ``lovely-gae --help`` may take at most.
TARGET = 0.3

#: What is timed: the arguments of ``lovely-gae``.
COMMANDS = (['--help'], ['--version'], ['download', '--help'])


def _lovely_gae():
    """The installed command, or this Python running the module."""
    found = shutil.which('lovely-gae', path=os.path.dirname(sys.executable))
    return [found] if found else [sys.executable, '-m', 'lovely_gae.cli']


def _median_seconds(argv, repeats):
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, check=True,
                       timeout=60)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(repeats=5):
    """One row per command: median seconds (``ours``), the floor, and
    whether it is under ``TARGET``."""
    floor = _median_seconds([sys.executable, '-c', 'pass'], repeats)
    rows = []
    for args in COMMANDS:
        argv = _lovely_gae() + args
        seconds = _median_seconds(argv, repeats)
        rows.append({'measurement': 'startup: lovely-gae ' + ' '.join(args),
                     'ours': seconds, 'floor': floor,
                     'ratio': seconds / floor, 'target_seconds': TARGET,
                     'met': seconds < TARGET, 'repeats': repeats})
    return rows


def text(rows):
    """The rows as lines of text."""
    return '\n'.join(
        '%-40s %.3f s (python -c pass: %.3f s, x%.1f); target < %.2f s: %s'
        % (r['measurement'], r['ours'], r['floor'], r['ratio'],
           r['target_seconds'], 'met' if r['met'] else 'NOT MET')
        for r in rows)
