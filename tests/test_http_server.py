"""Downloads and uploads over a real socket: waitress on a loopback port."""
import logging
import os
import select
import socket
import threading
from urllib.parse import urlsplit

import pytest
import requests
from google.appengine.api.datastore_file_stub import DatastoreFileStub
from google.appengine.ext import db

from lovely_gae import async_, defaults, entities
from lovely_gae import webserver
from lovely_gae.exceptions import (AccessDenied, DownloadError,
                                   LovelyGaeError, OutFileExists,
                                   RangeCorrupted, SnapshotNotFinished,
                                   SnapshotNotFound)
from lovely_gae.webserver import ThreadedServer
from lovely_gae.snapshot import api, client, getApp
from lovely_gae.snapshot.transfer import wire
from lovely_gae.snapshot.client import quiet
from lovely_gae.snapshot.models import Snapshot
from lovely_gae.snapshot.transfer.remote import RemoteClient
from tests.conftest import Dummy, Yummy, all_bytes

CREATE = '/lovely.gae/snapshot.CreateSnapshotHandler'


class Faults:
    """WSGI middleware: logs requests, and spoils the ones it is told to."""

    def __init__(self, app):
        self.app = app
        self.log = []
        self.plan = []  # (path part, action), each used once

    def __call__(self, environ, start_response):
        path = environ['PATH_INFO']
        self.log.append((path, environ.get('HTTP_RANGE')))
        self.statuses = getattr(self, 'statuses', [])

        def recording(status, headers, exc_info=None):
            self.statuses.append(int(status.split()[0]))
            return start_response(status, headers, exc_info)
        for index, (part, action) in enumerate(self.plan):
            if part in path:
                del self.plan[index]
                return action(self.app, environ, recording)
        return self.app(environ, recording)


def unavailable(app, environ, start_response):
    start_response('503 Service Unavailable', [('Content-Type',
                                                'text/plain')])
    return [b'try later\n']


def cut_after(count):
    """Send the headers and ``count`` bytes of the body, then drop it all."""
    def action(app, environ, start_response):
        body = b''.join(app(environ, start_response))

        def stream():
            yield body[:count]
            raise ConnectionAbortedError('cut by the test')
        return stream()
    return action


@pytest.fixture
def data(make_entities, finished_snapshot, monkeypatch, unsharded):
    """A finished snapshot of two kinds; Dummy's ranges stored in parts."""
    monkeypatch.setattr(defaults, 'PART_SIZE', 4096)
    make_entities(Dummy, 450)
    make_entities(Yummy, 30)
    return finished_snapshot(['Dummy', 'Yummy'], codec='none')


@pytest.fixture
def faulty(gae_testbed):
    faults = Faults(getApp(token='s3cret'))
    with ThreadedServer(faults) as server:
        faults.url = server.url
        yield faults


def fast(url, **kwargs):
    return RemoteClient(url, 's3cret', backoff=0.01, timeout=(5, 10),
                        **kwargs)


def local_copy(snap, tmp_path):
    out = tmp_path / 'local'
    out.mkdir()
    with open(client.download_snapshot(str(out), snap.id, progress=quiet),
              'rb') as fileobj:
        return fileobj.read()


def test_the_downloaded_file_is_exact_and_loads(data, snapshot_server,
                                                tmp_path):
    out = tmp_path / 'http'
    out.mkdir()
    path = client.download_snapshot(str(out), url=snapshot_server.url,
                                    token=snapshot_server.token,
                                    progress=quiet)
    assert path == str(out / ('snapshot.%d' % data.id))
    assert os.listdir(out) == ['snapshot.%d' % data.id]
    with open(path, 'rb') as fileobj:
        assert fileobj.read() == local_copy(data, tmp_path)
    stub = DatastoreFileStub('lovely-gae-testing', path, None,
                             save_changes=False, use_atexit=False)
    by_kind = stub._DatastoreFileStub__entities_by_kind
    assert sorted(len(v) for v in by_kind.values()) == [30, 450]


def test_seed_progress_lines_over_http(data, snapshot_server, tmp_path,
                                       capsys):
    client.download_snapshot(str(tmp_path), data.id, url=snapshot_server.url,
                             token=snapshot_server.token)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == 'Downloading snapshot: %d' % data.id
    assert lines[1].startswith('Downloading RB:%d:Dummy:0000000000:'
                               % data.id)
    assert lines[-1] == 'Saving to %s/snapshot.%d' % (tmp_path, data.id)


@pytest.mark.parametrize('token, error', [
    (None, 'a bearer token is required (HTTP 401)'),
    ('guess', 'wrong token (HTTP 403)')])
def test_without_the_token_nothing_is_created_or_written(
        data, snapshot_server, tmp_path, monkeypatch, token, error):
    monkeypatch.delenv('LOVELY_GAE_TOKEN', raising=False)
    remote = RemoteClient(snapshot_server.url, token)
    with pytest.raises(AccessDenied) as info:
        remote.create_snapshot(['Dummy'])
    assert str(info.value) == error
    with pytest.raises(AccessDenied):
        client.download_snapshot(str(tmp_path), url=remote, progress=quiet)
    assert [s.id for s in Snapshot.all()] == [data.id]
    assert os.listdir(tmp_path) == []
    res = requests.post(snapshot_server.url + '/lovely.gae/snapshots',
                        headers={'Authorization': 'Bearer ' + (token or '')})
    assert res.status_code in (401, 403)
    assert Snapshot.all().count() == 1


def test_a_range_tampered_with_on_the_server_aborts_the_download(
        data, snapshot_server, tmp_path):
    victim = data.range_backups('Yummy')[0]
    victim.data = bytes(b ^ 0xFF for b in victim.data)  # same length
    victim.put()
    with pytest.raises(RangeCorrupted) as info:
        client.download_snapshot(str(tmp_path), data.id,
                                 url=snapshot_server.url,
                                 token=snapshot_server.token, progress=quiet)
    assert info.value.range_name == victim.name
    assert str(info.value) == ('range %s: downloaded bytes do not match '
                               'their sha256' % victim.name)
    assert not os.path.exists(tmp_path / ('snapshot.%d' % data.id))
    # What was good is kept to resume from; the bad range is gone.
    [partial] = os.listdir(tmp_path)
    assert partial == '.snapshot.%d.partial' % data.id
    assert len(os.listdir(tmp_path / partial)) == len(
        data.range_backups('Dummy'))


def test_a_cut_connection_resumes_where_it_stopped(data, faulty, tmp_path):
    [first] = data.range_backups('Dummy')[:1]
    assert first.parts > 2
    faulty.plan.append(('ranges/', cut_after(5000)))
    path = client.download_snapshot(str(tmp_path), data.id,
                                    url=fast(faulty.url), progress=quiet)
    with open(path, 'rb') as fileobj:
        assert fileobj.read() == local_copy(data, tmp_path)
    ranged = [(p, r) for p, r in faulty.log if r]
    assert ranged == [(ranged[0][0], 'bytes=5000-')]
    assert ranged[0][0].endswith(first.name)
    resumed = [p for p, _ in faulty.log].index(ranged[0][0], 2)
    assert faulty.statuses[resumed] == 206  # only the rest came again
    assert sorted(os.listdir(tmp_path)) == ['local', 'snapshot.%d' % data.id]


def test_an_interrupted_download_resumes_in_the_next_call(data, faulty,
                                                          tmp_path):
    # Tries that bring nothing new count up to the limit; one that does
    # brings bytes counts as the first.
    faulty.plan += [('ranges/', cut_after(3000)), ('ranges/', cut_after(0)),
                    ('ranges/', cut_after(0))]
    with pytest.raises(DownloadError):
        client.download_snapshot(str(tmp_path), data.id,
                                 url=fast(faulty.url, retries=2),
                                 progress=quiet)
    assert os.listdir(tmp_path) == ['.snapshot.%d.partial' % data.id]
    faulty.log.clear()
    path = client.download_snapshot(str(tmp_path), data.id,
                                    url=fast(faulty.url), progress=quiet)
    assert faulty.log[1][1] is not None  # the first range: resumed
    with open(path, 'rb') as fileobj:
        assert fileobj.read() == local_copy(data, tmp_path)
    assert sorted(os.listdir(tmp_path)) == ['local', 'snapshot.%d' % data.id]


def test_transient_failures_are_retried(data, faulty, tmp_path):
    faulty.plan += [('manifest', unavailable), ('ranges/', unavailable),
                    ('ranges/', unavailable)]
    path = client.download_snapshot(str(tmp_path), data.id,
                                    url=fast(faulty.url), progress=quiet)
    assert os.path.exists(path)
    assert [p for p, _ in faulty.log].count(
        '/lovely.gae/snapshots/%d/manifest' % data.id) == 2


def test_failures_that_last_give_up_with_one_line(data, faulty, tmp_path):
    faulty.plan += [('manifest', unavailable)] * 3
    with pytest.raises(DownloadError) as info:
        client.download_snapshot(str(tmp_path), data.id,
                                 url=fast(faulty.url, retries=2),
                                 progress=quiet)
    assert str(info.value) == (
        'GET %s/lovely.gae/snapshots/%d/manifest failed after 3 tries: '
        'HTTP 503: try later' % (faulty.url, data.id))
    assert os.listdir(tmp_path) == []


def test_unknown_unfinished_and_existing_snapshots(data, snapshot_server,
                                                   tmp_path, make_entities):
    remote = RemoteClient(snapshot_server.url, snapshot_server.token)
    with pytest.raises(SnapshotNotFound):
        client.download_snapshot(str(tmp_path), 999, url=remote)
    started = api.create_snapshot(['Dummy'])
    with pytest.raises(SnapshotNotFinished) as info:
        client.download_snapshot(str(tmp_path), started.id, url=remote)
    # Its kind of 450 was cut as it was created: storing, not finished.
    assert info.value.status == 'storing'
    (tmp_path / ('snapshot.%d' % data.id)).write_bytes(b'mine')
    with pytest.raises(OutFileExists):
        client.download_snapshot(str(tmp_path), url=remote)
    assert os.listdir(tmp_path) == ['snapshot.%d' % data.id]


def test_upload_puts_a_downloaded_file_back(data, snapshot_server, tmp_path):
    before = all_bytes(['Dummy'])
    path = client.download_snapshot(str(tmp_path), data.id,
                                    url=snapshot_server.url,
                                    token=snapshot_server.token,
                                    progress=quiet)
    db.delete(Dummy.all(keys_only=True).fetch(None))
    db.delete(Yummy.all(keys_only=True).fetch(None))
    batches = []
    count = client.upload_snapshot(
        path, url=snapshot_server.url, token=snapshot_server.token,
        batch_bytes=8000, progress=lambda event, **info: batches.append(info))
    assert count == 480
    assert len(batches) > 3
    assert all(b['bytes'] <= 8000 for b in batches)
    assert sorted(e.SerializeToString() for e in
                  entities.iter_range('Dummy', '')) == before
    assert Yummy.all().count() == 30


def test_a_proxied_caller_is_no_loopback_caller(gae_testbed):
    with ThreadedServer(getApp()) as server:
        url = server.url + '/lovely.gae/snapshots'
        assert requests.get(url).status_code == 200
        assert requests.get(url, headers={
            'X-Forwarded-For': '203.0.113.9'}).status_code == 403


def test_a_terminal_gets_a_bar_of_bytes_rate_and_time_left(
        data, snapshot_server, tmp_path, capsys):
    total = sum(rb.size for rb in data.range_backups())
    client.download_snapshot(str(tmp_path), data.id, url=snapshot_server.url,
                             token=snapshot_server.token,
                             progress=client.BarProgress())
    out, err = capsys.readouterr()
    assert out == 'Saving to %s/snapshot.%d\n' % (tmp_path, data.id)
    final = err.replace('\r', '\n').strip().splitlines()[-1]
    assert final.startswith('snapshot %d: 100%%' % data.id)
    assert '%.1fk/%.1fk' % (total / 1024, total / 1024) in final.replace(
        'kB', 'k')
    assert 'B/s' in final


def connect(server):
    parts = urlsplit(server.url)
    return socket.create_connection((parts.hostname, parts.port), timeout=10)


def status_of(sock):
    """The status the server answers on ``sock``, however long that takes
    (up to the socket's timeout)."""
    data = b''
    while b'\r\n' not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b' ', 2)[1])


def counts():
    return Snapshot.all().count(), len(async_.get_tasks())


@pytest.mark.parametrize('auth', [False, True])
def test_a_huge_body_is_refused_before_it_is_sent(snapshot_server, auth):
    head = ('POST /lovely.gae/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n'
            'Content-Type: %s\r\nContent-Length: 900000000\r\n'
            % wire.CONTENT_TYPE)
    if auth:
        head += 'Authorization: Bearer %s\r\n' % snapshot_server.token
    with connect(snapshot_server) as sock:
        sock.sendall(head.encode() + b'\r\n')
        assert status_of(sock) == 413  # not a byte of the body was sent


def test_a_chunked_body_is_refused_as_soon_as_it_grows_too_large(
        snapshot_server):
    chunk = b'%x\r\n%s\r\n' % (64 * 1024, b'x' * 64 * 1024)
    with connect(snapshot_server) as sock:
        sock.sendall(b'POST /lovely.gae/upload HTTP/1.1\r\nHost: 127.0.0.1'
                     b'\r\nTransfer-Encoding: chunked\r\n\r\n')
        for _ in range(40):  # 2.5 MiB, never ended by a last chunk
            if select.select([sock], [], [], 0)[0]:
                break  # answered
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        assert status_of(sock) == 413


def test_stalled_connections_leave_room_for_others(snapshot_server):
    halves = [b'POST /lovely.gae/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n'
              b'Content-Length: 1000\r\n\r\nhalf a body',
              b'GET /lovely.gae/snapshots HTTP/1.1\r\nHost: 127.']
    stalled = []
    try:
        for index in range(120):
            sock = connect(snapshot_server)
            stalled.append(sock)
            sock.sendall(halves[index % 2])
        res = requests.get(snapshot_server.url + '/lovely.gae/snapshots',
                           timeout=10, headers={
                               'Authorization': 'Bearer '
                               + snapshot_server.token})
        assert res.status_code == 200
    finally:
        for sock in stalled:
            sock.close()


def test_app_engine_headers_open_nothing_on_the_test_server(
        data, snapshot_server, monkeypatch):
    """The server of ``lovely_gae.testing`` is in token-only mode."""
    monkeypatch.setenv('GAE_ENV', 'standard')
    before = counts()
    for headers in ({'X-AppEngine-QueueName': 'default'},
                    {'X-Appengine-Cron': 'true'}):
        for method, path in [('GET', CREATE), ('POST', CREATE),
                             ('GET', '/lovely.gae/worker'),
                             ('POST', '/lovely.gae/prune?keep=0'),
                             ('GET', '/lovely.gae/snapshots')]:
            res = requests.request(method, snapshot_server.url + path,
                                   headers=headers, timeout=10)
            assert res.status_code == 401
    assert counts() == before


def test_waitress_drops_header_names_with_an_underscore(gae_testbed,
                                                        monkeypatch):
    """``X-AppEngine_QueueName`` would be ``X-AppEngine-QueueName`` to WSGI."""
    monkeypatch.setenv('GAE_ENV', 'standard')
    with ThreadedServer(getApp(token='s3cret')) as server:
        url = server.url + '/lovely.gae/worker'
        assert requests.post(url, timeout=10, headers={
            'X-AppEngine-QueueName': 'default'}).status_code == 200
        assert requests.post(url, timeout=10, headers={
            'X-AppEngine_QueueName': 'default'}).status_code == 401


def test_a_tokenless_server_writes_on_post_only(gae_testbed, make_entities):
    make_entities(Dummy, 1)
    with ThreadedServer(getApp()) as server:
        for path in (CREATE, '/lovely.gae/worker'):
            res = requests.get(server.url + path, timeout=10)
            assert res.status_code == 403
            assert res.text == ('without a token, a GET that writes is '
                                'refused over HTTP: use POST or a token\n')
            assert requests.head(server.url + path,
                                 timeout=10).status_code == 405
        assert counts() == (0, 0)
        assert requests.post(server.url + CREATE,
                             timeout=10).status_code == 200
        assert counts() == (1, 1)


def test_stop_ends_a_worker_that_waits_for_a_caller_who_reads_nothing():
    """A caller that stops reading leaves a worker thread waiting for the
    answer to drain; stopping the server wakes it, so that none is left."""
    waiting = threading.Event()

    class Condition(threading.Condition):
        def wait(self, timeout=None):
            waiting.set()
            return super().wait(timeout)

    class Channel(webserver._Channel):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.outbuf_lock = Condition()

    def endless(environ, start_response):
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return iter(lambda: b'x' * (64 << 10), None)

    server = ThreadedServer(endless, outbuf_high_watermark=64 << 10)
    server.server.channel_class = Channel
    server.start()
    address = urlsplit(server.url)
    caller = socket.create_connection((address.hostname, address.port))
    try:
        caller.sendall(b'GET / HTTP/1.1\r\nHost: x\r\n\r\n')
        assert waiting.wait(30)  # the worker waits: the caller reads nothing
        server.stop(timeout=5)
        assert server.server.task_dispatcher.threads == set()
    finally:
        caller.close()


def test_the_trigger_stays_open_for_requests_that_end_after_the_loop(caplog):
    """Serving ends (Ctrl-C) while a worker thread still answers a
    request; that thread pulls the trigger as it ends. The trigger stays
    open until ``stop`` has waited for the threads: closed with the
    listening socket, the pull was an error (or a write to a descriptor
    reused meanwhile)."""
    answering, answer = threading.Event(), threading.Event()

    def slow(environ, start_response):
        answering.set()
        answer.wait(30)
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [b'late']

    server = ThreadedServer(slow)
    serving = threading.Thread(target=server.run)
    serving.start()
    address = urlsplit(server.url)
    caller = socket.create_connection((address.hostname, address.port))
    try:
        caller.sendall(b'GET / HTTP/1.1\r\nHost: x\r\n\r\n')
        assert answering.wait(30)
        server.close_soon()
        serving.join(30)
        assert not serving.is_alive()
        assert not server.server.trigger._closed
        answer.set()
        server.stop(timeout=30)
    finally:
        caller.close()
    assert server.server.task_dispatcher.threads == set()
    assert server.server.trigger._closed
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_stop_closes_the_listening_socket_of_a_server_that_never_ran():
    """``run`` closes the sockets as its loop ends; a server stopped
    without serving (a ``LocalServer`` whose start failed) kept its
    listening socket open till the collector found it (ResourceWarning)."""
    server = ThreadedServer(lambda environ, start_response: [])
    listening = server.server.socket
    server.stop()
    server.stop()  # twice: nothing more to do
    assert listening.fileno() == -1
    assert server.server._map == {}


def test_a_remote_create_refuses_a_kind_without_entities(snapshot_server):
    """``lovely-gae --url URL create Dumy`` (a typo) is refused as a local
    create is (``EmptyKind``), and creates no snapshot: a backup of
    nothing would pass for one of ``Dummy``."""
    Dummy(title='kept').put()
    remote = RemoteClient(snapshot_server.url, snapshot_server.token,
                          retries=0)
    with pytest.raises(LovelyGaeError, match="kind 'Dumy' has no entities"):
        remote.create_snapshot(['Dumy'], allow_empty=False)
    assert api.list_snapshots() == []
    assert remote.create_snapshot(['Dumy'])['kinds'] == ['Dumy']
