"""How long ``lovely-gae --help`` takes: what a new user waits for first.

Each command runs in a process of its own, as a shell starts it, a few
times; the median counts, beside the floor of a Python that does nothing
(``python -c pass``). The target is absolute: under ``TARGET`` seconds,
which the SDK (grpc, protobuf, ...) alone would take several times over.
A command with ``--url`` (``URL_COMMANDS``) talks to ``FakeApp``, a
stand-in for the app on a loopback port, and needs no SDK either: it may
take ``URL_TARGET``, for ``requests`` and the call.
"""
import http.server
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time

__all__ = ['TARGET', 'URL_TARGET', 'COMMANDS', 'FakeApp', 'measure',
           'text']

#: Seconds ``lovely-gae --help`` may take at most.
TARGET = 0.3

#: Seconds a ``--url`` command may take at most, its call on loopback
#: included (the SDK alone takes about 1.5 s).
URL_TARGET = 0.6

#: What is timed: the arguments of ``lovely-gae``.
COMMANDS = (['--help'], ['--version'], ['download', '--help'])

#: What is timed against ``FakeApp``: the arguments after ``--url URL``.
URL_COMMANDS = (['list'],)

#: A finished snapshot, as the app shows one (``docs/cli.rst``).
SNAPSHOT = {
    'id': 7, 'status': 'finished', 'kinds': ['Customer'], 'namespace': '',
    'batchsize': 200, 'codec': 'bz2', 'error': None, 'plan': None,
    'restore': None, 'created': '2026-01-01T03:00:00Z',
    'modified': '2026-01-01T03:00:01Z', 'kind_entities': {'Customer': 25},
    'range_counts': {'Customer': 1}, 'range_spans': {'Customer': [[0, 1]]},
    'progress': {'ranges_done': 1, 'ranges_total': 1, 'entities': 25,
                 'bytes': 1000, 'by_kind': {'Customer': {
                     'ranges_done': 1, 'ranges_total': 1}}}}


class FakeApp:
    """A stand-in for the snapshot app on a loopback port (``url``), in a
    thread: it answers the JSON calls with ``SNAPSHOT``, so that a command
    runs through without the SDK on either side."""

    ANSWERS = {
        ('GET', '/lovely.gae/snapshots'): {'snapshots': [SNAPSHOT],
                                           'next': None},
        ('GET', '/lovely.gae/snapshots/7'): SNAPSHOT,
        ('POST', '/lovely.gae/snapshots'): SNAPSHOT,
        ('POST', '/lovely.gae/snapshots/7/delete'): {'deleted': [7]},
        ('POST', '/lovely.gae/prune'): {'deleted': []},
        ('POST', '/lovely.gae/worker'): {'ran': 0, 'queued': 0,
                                         'next': None},
    }

    def __init__(self):
        answers = self.ANSWERS

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get('Content-Length') or 0)
                self.rfile.read(length)
                found = answers.get((self.command,
                                     self.path.partition('?')[0]))
                body = json.dumps(found).encode()
                self.send_response(200 if found is not None else 404)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(body)))
                if found is None:
                    self.send_header('X-Lovely-Gae', 'error')
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                                      Handler)
        self.url = 'http://127.0.0.1:%d' % self.server.server_address[1]

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever,
                         daemon=True).start()
        return self

    def __exit__(self, *exc_info):
        self.server.shutdown()
        self.server.server_close()


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
    whether it is under its target (``TARGET``, ``URL_TARGET``)."""
    floor = _median_seconds([sys.executable, '-c', 'pass'], repeats)
    rows = []

    def row(name, args, target):
        seconds = _median_seconds(_lovely_gae() + args, repeats)
        rows.append({'measurement': 'startup: lovely-gae ' + name,
                     'ours': seconds, 'floor': floor,
                     'ratio': seconds / floor, 'target_seconds': target,
                     'met': seconds < target, 'repeats': repeats})
    for args in COMMANDS:
        row(' '.join(args), args, TARGET)
    with FakeApp() as app:
        for args in URL_COMMANDS:
            row('--url URL ' + ' '.join(args),
                ['--url', app.url, '--token', 'x'] + args, URL_TARGET)
    return rows


def text(rows):
    """The rows as lines of text."""
    return '\n'.join(
        '%-40s %.3f s (python -c pass: %.3f s, x%.1f); target < %.2f s: %s'
        % (r['measurement'], r['ours'], r['floor'], r['ratio'],
           r['target_seconds'], 'met' if r['met'] else 'NOT MET')
        for r in rows)
