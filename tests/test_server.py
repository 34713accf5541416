"""``lovely-gae serve``: the app on a datastore file, drained and saved."""
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests
from google.appengine.ext import db

from lovely_gae import async_, local
from lovely_gae.exceptions import DatastoreFileError, LovelyGaeError
from lovely_gae.local import local_datastore
from lovely_gae.server import LocalServer
from lovely_gae.snapshot.transfer import devfile
from lovely_gae.snapshot.models import Snapshot
from tests.conftest import Dummy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def env(monkeypatch):
    monkeypatch.delenv('LOVELY_GAE_TOKEN', raising=False)
    monkeypatch.delenv('GAE_APPLICATION', raising=False)
    monkeypatch.delenv('GAE_ENV', raising=False)


def eventually(check, seconds=60.0):  # a bound for a loaded machine
    stop_at = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < stop_at, 'gave up waiting'
        time.sleep(0.05)


def test_serve_does_what_the_seeds_http_section_shows(env, tmp_path):
    path = str(tmp_path / 'served.datastore')
    with local_datastore(path, save=False) as datastore:
        db.put([Dummy(title=str(i)) for i in range(5)])
        server = LocalServer(datastore, port=0, interval=0.1,
                             no_token=True).start()
        try:
            assert 'only callers on this machine' in server.describe()
            res = requests.post(server.url + '/lovely.gae/snapshot.'
                                'CreateSnapshotHandler', timeout=10)
            snapshot_id = int(res.text.split()[2])
            assert res.text == ("Created Snapshot %d\nKinds: ['Dummy']"
                                % snapshot_id)
            # Nobody runs the tasks but the server's own worker, and it
            # saves the file as soon as they changed the datastore: wait
            # for the snapshot to finish, then for the file to hold it.
            def status():
                return requests.get('%s/lovely.gae/snapshots/%d' % (
                    server.url, snapshot_id), timeout=10).json()['status']
            eventually(lambda: status() == 'finished')
            eventually(lambda: os.path.exists(path) and devfile.count_kinds(
                path).get('RangeBackup') == 1)
            requests.post('%s/lovely.gae/snapshots/%d/delete' % (
                server.url, snapshot_id), timeout=10).raise_for_status()
        finally:
            server.stop()
    with local_datastore(path, save=False):
        assert Snapshot.all().count() == 0  # saved on the way out
        assert Dummy.all().count() == 5


def test_serve_needs_a_token_for_any_other_address(env, tmp_path):
    with local_datastore(str(tmp_path / 'x'), save=False) as datastore:
        with pytest.raises(LovelyGaeError, match='refusing to listen'):
            LocalServer(datastore, host='0.0.0.0', port=0, no_token=True)
        server = LocalServer(datastore, host='0.0.0.0', port=0,
                             token='s3cret')
        try:
            assert 'callers with the bearer token' in server.describe()
            assert 's3cret' not in server.describe()  # the caller knows it
        finally:
            server.http.server.close()


def test_no_token_is_refused_when_a_token_is_set(env, tmp_path, monkeypatch):
    monkeypatch.setenv('LOVELY_GAE_TOKEN', 'from-the-env')
    with local_datastore(str(tmp_path / 'x'), save=False) as datastore:
        with pytest.raises(LovelyGaeError, match='yet one is set'):
            LocalServer(datastore, port=0, no_token=True)


@pytest.fixture
def served(env, tmp_path):
    """A LocalServer on a file, its worker driven by the test."""
    path = str(tmp_path / 'served.datastore')
    with local_datastore(path, save=False) as datastore:
        db.put([Dummy(title=str(i)) for i in range(3)])
        server = LocalServer(datastore, port=0, token='s3cret')
        server.http.start()  # no worker thread: work_once() is called
        try:
            yield server
        finally:
            server.http.stop()


def call(server, method, path, token='s3cret', **kw):
    headers = kw.pop('headers', {})
    if token:
        headers['Authorization'] = 'Bearer ' + token
    return requests.request(method, server.url + path, headers=headers,
                            timeout=10, **kw)


def test_serve_never_trusts_app_engine_headers(served, monkeypatch):
    monkeypatch.setenv('GAE_ENV', 'standard')  # as if on App Engine
    for headers in ({'X-AppEngine-QueueName': 'default'},
                    {'X-Appengine-Cron': 'true'}):
        res = call(served, 'GET', '/lovely.gae/worker', token=None,
                   headers=headers)
        assert res.status_code == 401
    assert call(served, 'GET', '/lovely.gae/worker').status_code == 200


def test_writes_get_503_while_the_file_cannot_be_saved(served, monkeypatch,
                                                      caplog):
    path = served.datastore.path

    def full(stub, path):
        raise DatastoreFileError(path, 'cannot save: No space left on '
                                 'device')
    monkeypatch.setattr(local, 'save_datastore', full)
    assert call(served, 'POST', '/lovely.gae/snapshots').status_code == 201
    assert served.save_if_changed() is False
    assert 'No space left on device' in caplog.text
    res = call(served, 'POST', '/lovely.gae/snapshots')
    assert res.status_code == 503
    assert res.text == ('datastore file %s: cannot save: No space left on '
                        'device; nothing is written until it can be saved\n'
                        % path)
    assert call(served, 'GET', '/lovely.gae/snapshot.CreateSnapshotHandler'
                ).status_code == 503
    assert call(served, 'GET', '/lovely.gae/worker').status_code == 503
    assert call(served, 'GET', '/lovely.gae/prune?keep=0').status_code == 503
    # Reads go on; a caller without the token learns nothing.
    [snap] = call(served, 'GET', '/lovely.gae/snapshots').json()['snapshots']
    assert snap['status'] == 'started'  # no task ran: nothing new to lose
    assert call(served, 'POST', '/lovely.gae/snapshots',
                token=None).status_code == 401
    assert served.work_once() == 0
    assert call(served, 'POST', '/lovely.gae/snapshots').status_code == 503

    monkeypatch.undo()  # space came back
    assert served.work_once() == 0
    assert devfile.count_kinds(path)['Snapshot'] == 1
    assert call(served, 'POST', '/lovely.gae/snapshots').status_code == 201
    while served.work_once():
        pass
    assert devfile.count_kinds(path)['Snapshot'] == 2
    assert [s['status'] for s in call(served, 'GET', '/lovely.gae/snapshots'
                                      ).json()['snapshots']] == [
        'finished', 'finished']


def test_a_failed_last_save_is_an_error(served, monkeypatch):
    def full(stub, path):
        raise DatastoreFileError(path, 'cannot save: No space left on '
                                 'device')
    monkeypatch.setattr(local, 'save_datastore', full)
    assert call(served, 'POST', '/lovely.gae/snapshots').status_code == 201
    with pytest.raises(LovelyGaeError, match='No space left on device'):
        served._finish()


def serve(tmp_path, *args, env=None):
    """``lovely-gae serve`` in a process of its own; ``(process, banner)``."""
    path = str(tmp_path / 'served.datastore')
    environ = dict(os.environ, PYTHONPATH=ROOT, **(env or {}))
    environ.pop('LOVELY_GAE_TOKEN', None)
    process = subprocess.Popen(
        [sys.executable, '-m', 'lovely_gae.cli', '--datastore', path,
         'serve', '--port', '0'] + list(args), cwd=str(tmp_path),
        env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    banner = []
    while not banner or not banner[-1].startswith('A worker runs'):
        line = process.stdout.readline()
        assert line, process.stderr.read()
        banner.append(line.rstrip('\n'))
    return process, banner


def banner_url(banner):
    return banner[0].split()[1].rsplit('/lovely.gae/', 1)[0]


def test_lovely_gae_serve_makes_up_a_token_and_saves_on_ctrl_c(env,
                                                                tmp_path):
    process, banner = serve(tmp_path)
    try:
        url = banner_url(banner)
        assert 'callers with the bearer token' in banner[0]
        [token] = [line.split('=', 1)[1] for line in banner
                   if 'export LOVELY_GAE_TOKEN=' in line]
        assert len(token) >= 32
        assert '    lovely-gae --url %s list' % url in banner
        res = requests.post(url + '/lovely.gae/snapshots', timeout=10)
        assert res.status_code == 401
        res = requests.post(url + '/lovely.gae/snapshots', timeout=10,
                            headers={'Authorization': 'Bearer ' + token})
        assert res.status_code == 201
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert token not in out + err  # shown once, at the start
    with local_datastore(str(tmp_path / 'served.datastore'), save=False):
        assert Snapshot.all().count() == 1


def test_lovely_gae_serve_saves_on_sigterm(env, tmp_path):
    process, banner = serve(tmp_path, '--no-token')
    try:
        url = banner_url(banner)
        assert 'only callers on this machine' in banner[0]
        res = requests.post(url + '/lovely.gae/snapshots', timeout=10)
        assert res.status_code == 201
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    # waitress says when a request waited for a thread: on a busy machine
    errors = [line for line in err.splitlines()
              if not line.startswith('WARNING waitress.queue: Task queue')]
    assert (process.returncode, errors) == (0, [])
    assert sorted(os.listdir(str(tmp_path))) == [
        'served.datastore', 'served.datastore.lock']
    with local_datastore(str(tmp_path / 'served.datastore'), save=False):
        assert Snapshot.all().count() == 1


def test_a_second_writer_is_told_where_serve_listens(env, tmp_path, capsys):
    from lovely_gae import cli
    process, banner = serve(tmp_path, '--no-token')
    path = str(tmp_path / 'served.datastore')
    try:
        url = banner_url(banner)
        for command in (['create', '--allow-empty'], ['list']):
            assert cli.main(['--datastore', path] + command) == 1
            assert capsys.readouterr().err == (
                'lovely-gae: error: datastore file %s is in use by '
                'lovely-gae serve (pid %d): reach it with --url %s\n'
                % (path, process.pid, url))
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    # Served and stopped with no change: a writer gets in.
    assert cli.main(['--datastore', path, 'create', '--allow-empty']) == 0
    assert cli.main(['--datastore', path, 'list']) == 0


def test_no_token_with_a_token_is_an_error(env, tmp_path, capsys, monkeypatch):
    from lovely_gae import cli
    store = str(tmp_path / 'x.datastore')
    monkeypatch.setenv('LOVELY_GAE_TOKEN', 'set')
    assert cli.main(['--datastore', store, 'serve', '--no-token',
                     '--port', '0']) == 1
    assert capsys.readouterr().err.count('\n') == 1
    with pytest.raises(SystemExit) as info:
        cli.main(['--datastore', store, '--token', 't', 'serve',
                  '--no-token'])
    assert info.value.code == 2


def hello(environ, start_response):
    start_response('200 OK', [('Content-Length', '2')])
    return [b'ok']


def status_line(sock):
    """The status line of the answer coming on ``sock``."""
    answer = b''
    while not answer.endswith(b'ok'):
        more = sock.recv(4096)
        assert more, 'closed after %r' % answer
        answer += more
    return answer.split(b'\r\n')[0]


def test_headers_that_trickle_in_get_their_connection_closed():
    import select
    import socket
    from lovely_gae.webserver import ThreadedServer
    request = b'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'
    with ThreadedServer(hello, header_seconds=0.5) as server:
        address = ('127.0.0.1', int(server.url.rsplit(':', 1)[1]))
        with socket.create_connection(address, timeout=10) as idle, \
                socket.create_connection(address, timeout=10) as slow:
            idle.sendall(request)
            assert status_line(idle) == b'HTTP/1.1 200 OK'
            closed = False
            for _ in range(100):  # a byte a tenth of a second, 10 s at most
                try:
                    slow.sendall(b'G')
                    if select.select([slow], [], [], 0.1)[0]:
                        closed = slow.recv(100) == b''
                        break
                except ConnectionError:
                    closed = True
                    break
            assert closed
            # A connection that waits between two requests is left open.
            idle.sendall(request)
            assert status_line(idle) == b'HTTP/1.1 200 OK'


#: ``(number, thread)`` of each ``note_slowly`` run.
SLOW_SEEN = []


@async_.task
def note_slowly(number):
    """A task that takes a while and, while ``number`` < 6, queues two
    more: 13 in all, too slow for one worker's round to take them all.
    None waits for another: a worker that waits to save lets no other
    start a task meanwhile (``_SharedLock``)."""
    SLOW_SEEN.append((number, threading.current_thread().name))
    time.sleep(0.1)
    if number < 6:
        async_.defer(note_slowly, args=(number + 1,))
        async_.defer(note_slowly, args=(number + 10,))


def test_serve_runs_tasks_in_several_workers_and_saves_once_they_rest(
        env, tmp_path):
    path = str(tmp_path / 'served.datastore')
    SLOW_SEEN.clear()
    with local_datastore(path, save=False) as datastore:
        server = LocalServer(datastore, port=0, token='s3cret', threads=3,
                             interval=0.05)
        assert '3 workers run queued tasks' in server.describe()
        async_.defer(note_slowly, args=(0,))
        server.start()
        try:
            eventually(lambda: len({n for n, _ in SLOW_SEEN}) == 13)
            eventually(lambda: async_.get_tasks() == [])
        finally:
            server.stop()
    threads = {thread for _, thread in SLOW_SEEN}
    assert len(threads) > 1
    assert all(name.startswith('lovely-gae-worker-') for name in threads)
    with local_datastore(path, save=False):  # saved, with nothing queued
        assert async_.get_tasks() == []


def test_ctrl_c_ends_serve_even_while_its_loop_runs_a_thunk(env, tmp_path):
    """waitress runs the thunks of its trigger under a bare ``except``:
    Ctrl-C, raised as ``KeyboardInterrupt`` in one, was swallowed there,
    and ``lovely-gae serve`` went on serving."""
    assert threading.current_thread() is threading.main_thread()
    rescued = []
    with local_datastore(str(tmp_path / 'served.datastore'),
                         save=False) as datastore:
        server = LocalServer(datastore, port=0, token='s3cret')
        trigger = server.http.server.trigger

        def thunk():  # Ctrl-C, as the server's loop runs this
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)

        def rescue():  # what ends it if Ctrl-C did not
            rescued.append(True)
            trigger.pull_trigger(lambda: [dispatcher.close() for dispatcher
                                          in list(trigger._map.values())])
        threading.Timer(0.2, trigger.pull_trigger, args=(thunk,)).start()
        timer = threading.Timer(20, rescue)
        timer.start()
        try:
            server.run()
        finally:
            timer.cancel()
    assert rescued == []
