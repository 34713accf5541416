"""What the client takes of a hostile server's answer: nothing unbounded,
in bytes or in time, and nothing unpacked."""
import gzip
import json
import os
import re
import socket
import threading
import tracemalloc
import zlib

import pytest

from benchmarks import startup
from lovely_gae.exceptions import DownloadError
from lovely_gae.snapshot.transfer.remote import RemoteClient, RemoteError
from lovely_gae.webserver import ThreadedServer
from tests.test_transfer_trust import SNAPSHOT_ID, Hostile, download, record

MANIFEST = '/lovely.gae/snapshots/latest/manifest'


class Streaming(Hostile):
    """Sends a body 64 KiB at a time, so that the server never holds a copy
    of it (its memory counts with the client's); logs the
    ``Accept-Encoding`` of each request."""

    def __call__(self, environ, start_response):
        self.encodings.append(environ.get('HTTP_ACCEPT_ENCODING'))
        [body] = super().__call__(environ, start_response)
        return (body[i:i + (64 << 10)] for i in range(0, len(body), 64 << 10))


@pytest.fixture
def hostile(gae_testbed):
    app = Streaming()
    app.encodings = []
    # waitress holds at most a few chunks unsent, and in memory (not in
    # temporary files that a client going away would leave open).
    with ThreadedServer(app, outbuf_high_watermark=256 << 10,
                        outbuf_overflow=4 << 20) as server:
        app.url = server.url
        yield app


def bomb(prefix, mebibytes=64):
    """``prefix`` and as many MiB of spaces, gzipped twice: 64 MiB in a few
    hundred bytes."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b' ' * (1 << 20)
    inner = b''.join([packer.compress(prefix)]
                     + [packer.compress(block) for _ in range(mebibytes)]
                     + [packer.flush()])
    return gzip.compress(inner, 9)


def peak_of(call, *args, **kwargs):
    """``call``'s error (it must raise one) and the peak of memory on the
    way there, in every thread."""
    tracemalloc.start()
    try:
        with pytest.raises(Exception) as info:
            call(*args, **kwargs)
        return info.value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_an_answer_gzipped_twice_is_refused_unread(hostile, tmp_path):
    manifest = hostile.serve_snapshot([[record('a')]])
    packed = bomb(json.dumps(manifest).encode())
    assert len(packed) < 4096
    hostile.serve(MANIFEST, packed, headers=[('Content-Encoding',
                                              'gzip, gzip')])
    error, peak = peak_of(download, hostile.url, tmp_path)
    assert isinstance(error, RemoteError)
    assert str(error) == ("the answer is in Content-Encoding 'gzip, gzip'; "
                          "only identity is accepted (HTTP 200)")
    assert peak < 8 << 20
    assert hostile.range_requests() == []
    assert os.listdir(tmp_path) == []


def test_a_range_gzipped_twice_is_refused_unread(hostile, tmp_path):
    manifest = hostile.serve_snapshot([[record('a')]])
    [path] = [p for p in hostile.routes if '/ranges/' in p]
    hostile.serve(path, bomb(b''), headers=[('Content-Encoding', 'gzip, '
                                             'gzip')])
    error, peak = peak_of(download, hostile.url, tmp_path)
    assert isinstance(error, RemoteError)
    assert error.reason == ("the answer is in Content-Encoding 'gzip, gzip'; "
                            "only identity is accepted")
    assert peak < 8 << 20
    assert hostile.range_requests() == [path]
    assert manifest['ranges'][0]['size'] < 1000


def test_every_call_asks_for_the_answer_unpacked(hostile, tmp_path):
    hostile.serve_snapshot([[record('a')]])
    hostile.serve('/lovely.gae/snapshots', b'{"snapshots": []}')
    download(hostile.url, tmp_path)
    remote = RemoteClient(hostile.url, 's3cret')
    assert remote.list_snapshots() == []
    hostile.serve('/lovely.gae/snapshots',  # what a start answers
                  json.dumps(startup.SNAPSHOT).encode())
    remote.create_snapshot(['Dummy'])
    assert len(hostile.encodings) == 4
    assert set(hostile.encodings) == {'identity'}


def test_a_json_answer_longer_than_its_limit_is_refused_unread(hostile,
                                                                tmp_path):
    hostile.serve(MANIFEST, b'"' + b'a' * (16 << 20) + b'"')
    error, peak = peak_of(download, hostile.url, tmp_path)
    assert isinstance(error, RemoteError)
    assert str(error) == 'the answer is longer than 16777216 bytes (HTTP 200)'
    assert peak < 8 << 20


@pytest.mark.parametrize('status', ['500 Internal Server Error',
                                    '404 Not Found'])
def test_an_error_answer_is_read_for_its_first_line_alone(hostile, status):
    body = b'\x1b[2Jboom\n' + b'a' * (64 << 20)
    # Marked as the app's: its one line is what the error shows.
    hostile.serve('/lovely.gae/snapshots', body, status,
                  headers=[('X-Lovely-Gae', 'error')])
    remote = RemoteClient(hostile.url, 's3cret', retries=0)
    error, peak = peak_of(remote.list_snapshots)
    assert isinstance(error, DownloadError)
    assert str(error).endswith(('HTTP 500: ?[2Jboom', '?[2Jboom (HTTP 404)'))
    assert peak < 8 << 20


def test_a_manifest_nested_deeper_than_json_reads_is_one_line(hostile,
                                                             tmp_path):
    hostile.serve(MANIFEST, b'[' * 100000)
    with pytest.raises(RemoteError) as info:
        download(hostile.url, tmp_path)
    assert str(info.value) == ('the answer is JSON nested too deeply to read '
                               '(HTTP 200)')


class Trickle:
    """A server on a real socket that answers every request with ``head``
    (``%(length)d`` and ``%(status)s`` filled in) and then ``body`` a byte
    at a time, ``pause`` seconds apart; a ``Range: bytes=N-`` gets the
    body from byte N. ``requests`` logs each request's head."""

    def __init__(self, head, body, pause=0.05):
        self.head, self.body, self.pause = head, body, pause
        self.requests, self.stop = [], threading.Event()
        self.listener = socket.create_server(('127.0.0.1', 0))
        self.listener.settimeout(0.2)
        self.url = 'http://127.0.0.1:%d' % self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stop.set()
        self.thread.join(30)
        self.listener.close()

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            with conn:
                self._answer(conn)

    def _answer(self, conn):
        request = b''
        while b'\r\n\r\n' not in request:
            request += conn.recv(4096)
        self.requests.append(request.decode())
        start = re.search(r'Range: bytes=(\d+)-', self.requests[-1])
        start = int(start.group(1)) if start else 0
        status = '206 Partial Content\r\nContent-Range: bytes %d-%d/%d' % (
            start, len(self.body) - 1, len(self.body)) if start else '200 OK'
        head = self.head % {'status': status,
                            'length': len(self.body) - start}
        try:
            conn.sendall(head.encode())
            if not self.pause:
                return conn.sendall(self.body[start:])
            for index in range(start, len(self.body)):
                if self.stop.wait(self.pause):
                    return
                conn.sendall(self.body[index:index + 1])
        except OSError:
            pass  # the client gave up


HEAD = 'HTTP/1.1 %(status)s\r\nContent-Length: %(length)d\r\n\r\n'


def test_a_json_answer_that_trickles_in_ends_at_its_deadline():
    with Trickle(HEAD, b' ' * 200) as server:
        remote = RemoteClient(server.url, 's3cret', retries=0,
                              timeout=(5, 10), response_seconds=(0.5, 60))
        with pytest.raises(DownloadError) as info:
            remote.list_snapshots()
    assert str(info.value) == ('GET %s/lovely.gae/snapshots failed after 1 '
                               'tries: no whole answer within 0.5 seconds'
                               % server.url)


def test_a_range_that_trickles_in_is_given_up_after_its_tries(tmp_path):
    body = b'x' * 100
    entry = {'name': 'RB:7:Dummy:0000000000:100', 'size': len(body),
             'sha256': 'a' * 64, 'path': '/lovely.gae/snapshots/7/ranges/x'}
    with Trickle(HEAD, body) as server:
        remote = RemoteClient(server.url, 's3cret', retries=1, backoff=0.01,
                              timeout=(5, 10), response_seconds=(60, 0.3))
        with pytest.raises(DownloadError) as info:
            remote.fetch_range(SNAPSHOT_ID, entry, str(tmp_path / 'part'))
    assert str(info.value) == ('download of range %s failed after 2 tries: '
                               'no whole answer within 0.3 seconds'
                               % entry['name'])
    assert len(server.requests) == 2
    assert 'Range: bytes=' in server.requests[1]  # it resumed


def test_a_json_answer_of_unknown_length_stops_at_its_limit():
    head = 'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n'
    with Trickle(head, b' ' * 5000, pause=0) as server:
        remote = RemoteClient(server.url, 's3cret', retries=0,
                              json_bytes=1000)
        with pytest.raises(RemoteError) as info:
            remote.list_snapshots()
    assert str(info.value) == 'the answer is longer than 1000 bytes (HTTP 200)'
