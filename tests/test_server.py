"""``lovely-gae serve``: the app on a datastore file, drained and saved."""
import os
import time

import pytest
import requests
from google.appengine.ext import db

from lovely_gae.exceptions import LovelyGaeError
from lovely_gae.local import local_datastore
from lovely_gae.server import LocalServer
from lovely_gae.snapshot import devfile
from lovely_gae.snapshot.models import Snapshot
from tests.conftest import Dummy


@pytest.fixture
def env(monkeypatch):
    monkeypatch.delenv('LOVELY_GAE_TOKEN', raising=False)
    monkeypatch.delenv('GAE_APPLICATION', raising=False)


def eventually(check, seconds=10.0):
    stop_at = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < stop_at, 'gave up waiting'
        time.sleep(0.05)


def test_serve_does_what_the_seeds_http_section_shows(env, tmp_path):
    path = str(tmp_path / 'served.datastore')
    with local_datastore(path, save=False) as stub:
        db.put([Dummy(title=str(i)) for i in range(5)])
        server = LocalServer(stub, port=0, interval=0.1).start()
        try:
            assert 'only callers on this machine' in server.describe()
            res = requests.post(server.url + '/lovely.gae/snapshot.'
                                'CreateSnapshotHandler', timeout=10)
            snapshot_id = int(res.text.split()[2])
            assert res.text == ("Created Snapshot %d\nKinds: ['Dummy']"
                                % snapshot_id)
            # Nobody runs the tasks but the server's own worker, and it
            # saves the file as soon as they changed the datastore.
            eventually(lambda: os.path.exists(path) and devfile.count_kinds(
                path).get('RangeBackup') == 1)
            info = requests.get('%s/lovely.gae/snapshots/%d' % (
                server.url, snapshot_id), timeout=10).json()
            assert info['status'] == 'finished'
            requests.post('%s/lovely.gae/snapshots/%d/delete' % (
                server.url, snapshot_id), timeout=10).raise_for_status()
        finally:
            server.stop()
    with local_datastore(path, save=False):
        assert Snapshot.all().count() == 0  # saved on the way out
        assert Dummy.all().count() == 5


def test_serve_needs_a_token_for_any_other_address(env, tmp_path):
    with local_datastore(str(tmp_path / 'x'), save=False) as stub:
        with pytest.raises(LovelyGaeError, match='refusing to listen'):
            LocalServer(stub, host='0.0.0.0', port=0)
        server = LocalServer(stub, host='0.0.0.0', port=0, token='s3cret')
        try:
            assert 'callers with the bearer token' in server.describe()
        finally:
            server.http.server.close()


def test_lovely_gae_serve_saves_on_ctrl_c(env, tmp_path):
    import signal
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = str(tmp_path / 'served.datastore')
    process = subprocess.Popen(
        [sys.executable, '-m', 'lovely_gae.cli', '--datastore', path,
         'serve', '--port', '0'], cwd=str(tmp_path),
        env=dict(os.environ, PYTHONPATH=root), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        banner = process.stdout.readline()
        url = banner.split()[1].rsplit('/lovely.gae/', 1)[0]
        assert 'only callers on this machine' in banner
        res = requests.post(url + '/lovely.gae/snapshots', timeout=10)
        assert res.status_code == 201
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    with local_datastore(path, save=False):
        assert Snapshot.all().count() == 1
