"""What the command line says when it is pointed at the wrong thing."""
import contextlib
import os
import http.server
import json
import pickle
import threading

import pytest

from lovely_gae import cli
from tests.conftest import run_cli


@contextlib.contextmanager
def plain_web_server():
    """A web server with no app behind it: a 404 page (HTML) everywhere,
    as ``python -m http.server`` answers where no file is."""
    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            self.send_error(404, 'File not found')
        do_POST = do_GET

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield 'http://127.0.0.1:%d' % server.server_address[1]
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def test_a_url_with_no_app_behind_it_says_so(capsys, tmp_path):
    with plain_web_server() as url:
        for command in (['list'], ['status', '3'],
                        ['download', str(tmp_path / 'out')]):
            assert cli.main(['--url', url] + command) == 1
            assert capsys.readouterr().err == (
                'lovely-gae: error: no lovely_gae app at %s/lovely.gae/ '
                '(HTTP 404): is getApp() mounted under /lovely.gae/?\n'
                % url)
    assert not (tmp_path / 'out').exists()


def test_the_apps_own_errors_are_marked_and_still_read(snapshot_server,
                                                       capsys):
    from webtest import TestApp
    from lovely_gae.snapshot import getApp
    app = TestApp(getApp(token='s3cret'))
    for path, status in (('/lovely.gae/snapshots/9', 401),
                         ('/lovely.gae/nothing', 401)):
        assert app.get(path, status=status).headers['X-Lovely-Gae'] == (
            'error')
    auth = {'Authorization': 'Bearer s3cret'}
    assert app.get('/lovely.gae/nothing', headers=auth,
                   status=404).headers['X-Lovely-Gae'] == 'error'
    assert 'X-Lovely-Gae' not in app.get('/lovely.gae/snapshots',
                                         headers=auth).headers
    assert cli.main(['--url', snapshot_server.url,  # may start with '-':
                     '--token=' + snapshot_server.token, 'status', '9']) == 1
    assert capsys.readouterr().err == (
        'lovely-gae: error: no snapshot with id 9\n')


def test_a_url_without_a_scheme_is_refused_up_front(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(['--url', '127.0.0.1:8080', 'list'])
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "lovely-gae list: error: --url needs http:// or https://: got "
        "'127.0.0.1:8080'\n")


def test_serve_on_a_port_in_use_names_it_and_the_way_out(store, capsys):
    import socket
    from tests.conftest import run_cli
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert run_cli(store, 'serve', '--port', str(port)) == 1
    assert capsys.readouterr().err == (
        'lovely-gae: error: port %d on 127.0.0.1 is in use: pick another '
        'with --port (or --port 0 for any free one)\n' % port)


@pytest.mark.parametrize('command', ['inspect', 'verify', 'upload'])
def test_a_missing_file_or_a_directory_is_named(store, capsys, tmp_path,
                                                command):
    from tests.conftest import run_cli
    out = tmp_path / 'out'
    missing = str(out / 'snapshot.9999')
    extra = ['--yes'] if command == 'upload' else []
    assert run_cli(store, command, missing, *extra) == 1
    assert capsys.readouterr().err == (
        'lovely-gae: error: no such file: %s\n' % missing)
    out.mkdir()
    assert run_cli(store, command, str(out), *extra) == 1
    assert capsys.readouterr().err == (
        'lovely-gae: error: %s is a directory: give a snapshot file, e.g. '
        '%s/snapshot.604\n' % (out, out))
    (out / 'snapshot.7').write_bytes(b'')
    (out / 'snapshot.12').write_bytes(b'')
    assert run_cli(store, command, str(out), *extra) == 1
    assert capsys.readouterr().err == (
        'lovely-gae: error: %s is a directory: give a snapshot file, e.g. '
        '%s/snapshot.12 (it holds snapshot.7, snapshot.12)\n' % (out, out))
    assert not os.path.exists(store)  # no datastore made for nothing


@pytest.mark.parametrize('interruption', ['error', 'ctrl-c'])
def test_an_interrupted_download_says_what_it_keeps_and_resumes(
        remote, make_entities, finished_snapshot, capsys, tmp_path,
        monkeypatch, interruption):
    from lovely_gae.exceptions import DownloadError
    from lovely_gae.snapshot.transfer.remote import RemoteClient
    from tests.conftest import Dummy
    make_entities(Dummy, 30)
    snap = finished_snapshot(['Dummy'], batchsize=10)
    fetch = RemoteClient.fetch_range
    fetched = []

    def cut_on_third(self, *args, **kwargs):
        fetched.append(args)
        if len(fetched) == 3:
            raise (DownloadError('cut') if interruption == 'error'
                   else KeyboardInterrupt())
        return fetch(self, *args, **kwargs)
    monkeypatch.setattr(RemoteClient, 'fetch_range', cut_on_third)
    out = tmp_path / 'out'
    capsys.readouterr()
    assert remote('download', str(snap.id), str(out)) == (
        1 if interruption == 'error' else 130)
    partial = out / ('.snapshot.%d.partial' % snap.id)
    assert capsys.readouterr().err == (
        'lovely-gae: %s; 2 of 3 ranges kept in %s; run the same command '
        'again to go on\n' % ('error: cut' if interruption == 'error' else
                              'interrupted', partial))
    assert remote('download', str(snap.id), str(out)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == 'resuming: 2 of 3 ranges already here'
    assert lines[-1] == 'Saving to %s' % (out / ('snapshot.%d' % snap.id))
    assert os.listdir(out) == ['snapshot.%d' % snap.id]


@pytest.fixture
def remote(snapshot_server, monkeypatch):
    """``remote(*args)``: the CLI against the app, token from the env."""
    monkeypatch.setenv('LOVELY_GAE_TOKEN', snapshot_server.token)
    return lambda *args: cli.main(['--url', snapshot_server.url] + list(args))


def customers(app_id, path):
    """Customers a development datastore of ``app_id`` finds in ``path``
    (the SDK's own file stub loads it)."""
    from google.appengine.api import datastore
    from tests.conftest import sdk_file_testbed
    bed = sdk_file_testbed(app_id, path)
    try:
        return datastore.Query('Customer',
                               namespace='lovely-gae-demo').Count()
    finally:
        bed.deactivate()


def test_download_and_inspect_name_the_keys_app_and_how_to_move_it(
        store, capsys, tmp_path):
    from tests.conftest import demo_into, run_cli
    demo_into(store)
    out = tmp_path / 'out'
    capsys.readouterr()
    assert run_cli(store, 'download', str(out)) == 0
    (path,) = out.iterdir()
    hint = ("Its keys are of app 'lovely-gae-local': a development "
            "datastore of that app id loads the file as it is.\n"
            "For another app id: download with --target-app-id ID, or: "
            "lovely-gae --datastore FILE --app-id ID upload PATH\n")
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1] == 'Saving to %s' % path
    assert captured.err == hint
    assert run_cli(store, '--json', 'download', str(tmp_path / 'j')) == 0
    assert json.loads(capsys.readouterr().out)['app_id'] == (
        'lovely-gae-local')
    assert run_cli(store, 'inspect', str(path)) == 0
    assert capsys.readouterr().out.endswith('\n' + hint)
    assert run_cli(store, '--json', 'inspect', str(path)) == 0
    assert json.loads(capsys.readouterr().out)['app_ids'] == [
        'lovely-gae-local']
    # What the lines say holds: as it is, only its own app id finds it ...
    assert customers('lovely-gae-local', str(path)) == 250
    assert customers('dev~my-app', str(path)) == 0
    # ... and an upload moves it into a datastore of another.
    dev = str(tmp_path / 'dev.datastore')
    assert cli.main(['--datastore', dev, '--app-id', 'dev~my-app', 'upload',
                     '--yes', str(path)]) == 0
    assert customers('dev~my-app', dev) == 250


def test_a_snapshot_shows_what_it_is(finished_snapshot, make_entities):
    from lovely_gae.snapshot.models import Snapshot
    from tests.conftest import Dummy, Yummy
    make_entities(Dummy, 3)
    make_entities(Yummy, 2)
    snap = finished_snapshot(['Dummy', 'Yummy'])
    assert repr(snap).startswith(
        '<lovely_gae.snapshot.models.Snapshot object at 0x')  # the seed's
    assert repr(snap).endswith(
        ": %d finished ns='' kinds=Dummy,Yummy>" % snap.id)
    assert repr(Snapshot(kinds=['Dummy'], namespace='x')).endswith(
        ": (unsaved) started ns='x' kinds=Dummy>")


def test_counts_of_entities_read_as_people_say_them():
    from lovely_gae import clitext
    assert [clitext.entities(n) for n in (0, 1, 2)] == [
        '0 entities', '1 entity', '2 entities']


def _entity(name):
    """An encoded entity of kind ``K`` named ``name``."""
    from lovely_gae.entities import EntityProto
    proto = EntityProto()
    proto.key.app = 'app'
    element = proto.key.path.element.add()
    element.type, element.name = 'K', name
    proto.entity_group.element.add().CopyFrom(element)
    return proto.SerializeToString()


def _datastore_file(records):
    import io
    from lovely_gae.snapshot.transfer.devfile import DevFileWriter
    out = io.BytesIO()
    writer = DevFileWriter(out)
    writer.add_many(records)
    writer.close()
    return out.getvalue()


#: Files that are no datastore file, and what is wrong with each.
BAD_FILES = {
    'text': (b'Customer,Order\n1,2\n',
             "not a datastore file: it starts with b'Customer'"),
    'empty': (b'', 'not a datastore file: it is empty'),
    'cut': (_datastore_file([_entity('a'), _entity('b')])[:-10],
            'cut short after 1 entity'),
    'dict': (pickle.dumps({'a': b'b'}, protocol=4),
             "not a datastore file: a pickle of something else "
             "(opcode b'}')"),
    'numbers': (pickle.dumps([1, 2], protocol=4),
                'not a datastore file: a number among its entities'),
    'calls': (b'\x80\x03cos\nsystem\n',
              "not a datastore file: it calls 'os.system'"),
    'huge': (b'\x80\x03](B\xff\xff\xff\x7f',
             'entity 1 claims 2147483647 bytes, more than an entity takes'),
}


@pytest.mark.parametrize('command', ['verify', 'upload', 'inspect'])
@pytest.mark.parametrize('name', sorted(BAD_FILES))
def test_a_file_that_is_no_datastore_file_is_named_once(
        store, capsys, tmp_path, command, name):
    """One line: the file, named once, and what is wrong with it."""
    content, reason = BAD_FILES[name]
    path = tmp_path / ('snapshot.%s' % name)
    path.write_bytes(content)
    extra = ['--yes'] if command == 'upload' else []
    assert run_cli(store, command, str(path), *extra) == 1
    assert capsys.readouterr() == (
        '', 'lovely-gae: error: %s: %s\n' % (path, reason))
    assert run_cli(store, '--json', command, str(path), *extra) == 1
    assert json.loads(capsys.readouterr().err) == {
        'error': '%s: %s' % (path, reason), 'exit': 1,
        'type': 'BadDatastoreFile'}


def test_a_damaged_entity_is_named_with_its_file(store, capsys, tmp_path):
    path = tmp_path / 'snapshot.3'
    path.write_bytes(_datastore_file([_entity('a'), b'\xff']))
    for command in ('verify', 'inspect'):
        assert run_cli(store, command, str(path)) == 1
        assert capsys.readouterr().err == (
            'lovely-gae: error: %s: entity 2: cannot be decoded\n' % path)


def test_a_file_of_another_apps_entities_only_says_which_app(
        store, capsys, tmp_path):
    """Uploaded into with ``--app-id`` (as a development server's file is),
    then opened without it, a file would look empty: it says so."""
    from lovely_gae.local import local_datastore
    from tests.conftest import Dummy
    with local_datastore(store, 'dev~my-app'):
        Dummy(title='a').put()
    assert run_cli(store, 'create', 'Dummy') == 1
    assert capsys.readouterr().err == (
        "lovely-gae: warning: %s holds entities of app 'dev~my-app', none "
        "of app 'lovely-gae-local': --app-id dev~my-app works on them\n"
        "lovely-gae: error: kind 'Dummy' has no entities in namespace '' of "
        "app lovely-gae-local\n" % store)
    assert run_cli(store, '--app-id', 'dev~my-app', 'list') == 0
    assert run_cli(store, '--json', 'list') == 0
    assert capsys.readouterr().err == ''
