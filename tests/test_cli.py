import contextlib
import json
import os
import threading

import pytest

from lovely_gae import cli, clitext, defaults
from lovely_gae import entities as entities_module
from lovely_gae.snapshot.transfer import devfile
from tests.conftest import demo_into
from tests.conftest import run_cli as run


def test_demo_restores_byte_for_byte_and_downloads(store, capsys, tmp_path):
    assert run(store, 'demo') == 0
    out = capsys.readouterr().out
    assert 'byte for byte: yes' in out
    assert 'Customer: 10 created, 0 changed, 0 deleted' in out
    [name] = (tmp_path / 'lovely-gae-demo').iterdir()
    assert devfile.count_kinds(str(name)) == {'Customer': 250, 'Order': 600}
    # How to load it, with the app id its keys are of (not "app_id"):
    app = defaults.LOCAL_APP_ID  # what the demo's datastore file is of
    assert out.rstrip().endswith(
        "its keys are of app %r: load it with DatastoreFileStub(%r, %r, "
        "None)" % (app, app, 'lovely-gae-demo/%s' % name.name))


def test_create_list_status_restore_delete_on_a_datastore_file(
        store, capsys, tmp_path):
    demo_into(store)
    capsys.readouterr()
    assert run(store, '--json', 'list') == 0
    [snap] = json.loads(capsys.readouterr().out)
    assert snap['status'] == 'finished'
    assert run(store, '--json', 'create', 'Customer', '--allow-empty') == 0
    created = json.loads(capsys.readouterr().out)
    assert created['kinds'] == ['Customer']
    assert created['progress']['entities'] == 0  # demo data is namespaced
    assert run(store, '--json', 'status', str(snap['id'])) == 0
    assert json.loads(capsys.readouterr().out)['id'] == snap['id']
    assert run(store, 'delete', str(created['id']), '--yes') == 0
    assert run(store, '--json', 'list') == 0
    assert [s['id'] for s in json.loads(capsys.readouterr().out.split(
        'Deleted snapshot %d\n' % created['id'])[-1])] == [snap['id']]


def test_list_shows_namespace_entities_stored_size_and_age(store, capsys):
    demo_into(store)
    capsys.readouterr()
    assert run(store, 'list') == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ['id', 'status', 'age', 'namespace', 'entities',
                              'stored', 'kinds']
    fields = row.split()
    assert fields[1:3] == ['finished', fields[2]] and fields[2][-1] in 'smhd'
    assert fields[3:5] == ['lovely-gae-demo', '850']
    assert fields[6] == 'KiB' and float(fields[5]) > 1  # 19,023 bytes
    assert fields[7] == 'Customer,Order'


def test_ages_and_sizes_read_as_people_read_them():
    import datetime
    now = datetime.datetime(2026, 12, 2, 12, 0, tzinfo=datetime.timezone.utc)
    assert [clitext.age(now, created) for created in (
        '2026-12-02T11:59:15Z', '2026-12-02T11:47:59.5Z',
        '2026-12-02T07:00:00Z', '2026-11-29T12:00:00Z')] == [
        '45s', '12m', '5h', '3d']
    assert [clitext.size(n) for n in (850, 19023, 5 * 2 ** 30 + 1)] == [
        '850 B', '18.6 KiB', '5.0 GiB']


def test_spans_and_the_next_task_read_as_people_read_them():
    assert [clitext.span(s) for s in (0, 44.6, 60, 598.2, 7500, 273600)] == [
        '0 s', '45 s', '1 min', '9 min 58 s', '2 h 5 min', '3 d 4 h']
    task = {'task': 'purge_snapshot(605)', 'due': '2026-12-02T12:10:00Z'}
    assert [clitext.next_task(dict(task, due_in=due_in, held=held))
            for due_in, held in ((598.2, False), (0.2, False), (598.2, True),
                                 (0, True))] == [
        'purge_snapshot(605), due in 9 min 58 s',
        'purge_snapshot(605), due now',
        'purge_snapshot(605), held by a worker (its lease ends in 9 min '
        '58 s)',
        'purge_snapshot(605), held by a worker (its lease has ended)']
    assert clitext.worker_ran({'ran': 3, 'queued': 0, 'next': None}) == (
        'Ran 3 tasks; 0 queued')



@pytest.mark.parametrize('command', [['list'], ['status', '1'],
                                     ['download', '.'], ['queue']])
def test_a_missing_datastore_file_is_an_error_for_readers(store, capsys,
                                                          command):
    # An empty answer would hide a misspelt --datastore.
    assert run(store, *command) == 1
    assert capsys.readouterr().err == (
        'lovely-gae: error: datastore file %s: does not exist; a command '
        'that changes the datastore creates it, "lovely-gae demo" fills '
        'one\n' % store)
    assert os.listdir(os.path.dirname(store)) == []  # no lock file either


def test_errors_are_one_line_and_exit_1(empty_store, capsys):
    assert run(empty_store, 'status', '999') == 1
    err = capsys.readouterr().err
    assert err == 'lovely-gae: error: no snapshot with id 999\n'
    assert run(empty_store, 'create', '--batchsize', '0') == 1
    assert 'invalid batchsize 0' in capsys.readouterr().err


def test_bad_usage_exits_2(store, capsys):
    with pytest.raises(SystemExit) as info:
        run(store, 'restore')
    assert info.value.code == 2


def test_seed_download_script(store, capsys, tmp_path):
    demo_into(store)
    out_dir = tmp_path / 'out'
    out_dir.mkdir()
    assert cli.main(['--datastore', store, 'download', str(out_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith('Saving to %s/snapshot.' % out_dir)
    # The seed's entry point takes the same arguments.
    code = cli.download_snapshot(["--datastore", store, str(out_dir)])
    assert code == 1  # the file of the latest snapshot exists already
    assert "Out file exists" in capsys.readouterr().err


def test_help_says_what_each_command_does(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(['--help'])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ('create', 'list', 'status', 'restore', 'delete', 'prune',
                    'download', 'upload', 'verify', 'inspect', 'queue',
                    'serve', 'worker', 'demo'):
        assert command in out
        with pytest.raises(SystemExit) as info:
            cli.main([command, '--help'])
        assert info.value.code == 0
        text = capsys.readouterr().out
        assert text.startswith('usage: lovely-gae %s' % command)
        assert len(text.split('\n\n')[1]) > 12  # a description


@pytest.mark.parametrize('argv', [
    ['--url', 'http://127.0.0.1:9', 'serve'],
    ['--url', 'http://127.0.0.1:9', 'demo'],
    ['--url', 'http://127.0.0.1:9', '--datastore', 'x', 'list'],
    ['--url', 'http://127.0.0.1:9', '--app-id', 'a', 'list'],
    ['download', 'a', 'b', 'c'],
    ['status', 'abc'],
])
def test_more_bad_usage_exits_2(store, capsys, argv):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert 'usage: lovely-gae' in capsys.readouterr().err


def test_serve_refuses_other_addresses_without_a_token(store, capsys,
                                                       monkeypatch):
    monkeypatch.delenv('LOVELY_GAE_TOKEN', raising=False)
    assert run(store, 'serve', '--no-token', '--host', '0.0.0.0',
               '--port', '0') == 1
    err = capsys.readouterr().err
    assert err.startswith('lovely-gae: error: refusing to listen on 0.0.0.0 '
                          'without a token')
    assert err.count('\n') == 1


@contextlib.contextmanager
def app_worker():
    """The app's own worker meanwhile, as pushes or cron are on App Engine."""
    from lovely_gae.async_ import run_tasks
    stop = threading.Event()

    def work():
        while not stop.wait(0.05):
            run_tasks(recursive=True)
    worker = threading.Thread(target=work)
    worker.start()
    try:
        yield
    finally:
        stop.set()
        worker.join()


@pytest.fixture
def remote(snapshot_server, monkeypatch):
    """``remote(*args)``: the CLI against the app, token from the env."""
    monkeypatch.setenv('LOVELY_GAE_TOKEN', snapshot_server.token)

    def call(*args):
        return cli.main(['--url', snapshot_server.url] + list(args))
    return call


def out_json(capsys):
    return json.loads(capsys.readouterr().out)


def test_every_remote_command_over_http(remote, make_entities, capsys,
                                        tmp_path):
    from tests.conftest import Dummy
    make_entities(Dummy, 30)
    assert remote('--json', 'create', 'Dummy', '--batchsize', '10',
                  '--async') == 0
    created = out_json(capsys)
    assert created['status'] == 'started'
    assert remote('--json', 'worker') == 0
    assert out_json(capsys) == {'ran': 5, 'queued': 0,  # 3 ranges
                                'next': None}
    assert remote('--json', 'status', str(created['id'])) == 0
    assert out_json(capsys)['progress']['entities'] == 30
    assert remote('--json', 'list') == 0
    assert [s['id'] for s in out_json(capsys)] == [created['id']]
    Dummy.all().get().delete()
    with app_worker():  # the command waits for the dry run's tasks
        assert remote('restore', str(created['id']), '--dry-run') == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        'Dummy: 1 created, 0 changed, 0 deleted')
    assert remote('restore', str(created['id']), '--yes', '--async') == 0
    assert capsys.readouterr().out == (
        'Restore of snapshot %d: running\n' % created['id'])
    assert remote('worker', '--wait') == 0
    assert Dummy.all().count() == 30
    out_dir = tmp_path / 'out'
    out_dir.mkdir()
    assert remote('download', str(out_dir)) == 0
    path = str(out_dir / ('snapshot.%d' % created['id']))
    assert capsys.readouterr().out.splitlines()[-1] == 'Saving to ' + path
    assert devfile.count_kinds(path) == {'Dummy': 30}
    Dummy.all().get().delete()
    assert remote('upload', path, '--yes') == 0
    assert capsys.readouterr().out == 'Uploaded 30 entities from %s\n' % path
    assert Dummy.all().count() == 30
    assert remote('delete', str(created['id']), '--yes') == 0
    assert remote('--json', 'prune', '--keep', '0', '--yes') == 0
    assert capsys.readouterr().out.endswith('"deleted": []\n}\n')
    assert remote('status', str(created['id'])) == 1
    assert capsys.readouterr().err == (
        'lovely-gae: error: no snapshot with id %d\n' % created['id'])


def test_list_over_url_shows_every_page_or_the_newest_n(
        remote, make_entities, capsys, monkeypatch):
    """The app sends a page at a time (``calls.LIST_PAGE``): ``list`` asks
    for each in turn, as ``kubectl get`` does; ``--limit`` stops at N."""
    from lovely_gae.snapshot import calls
    from lovely_gae.snapshot.transfer.remote import RemoteClient
    from tests.conftest import Dummy
    make_entities(Dummy, 1)
    monkeypatch.setattr(calls, 'LIST_PAGE', 2)
    monkeypatch.setattr(calls, 'MAX_LIST_PAGE', 2)
    monkeypatch.setattr(RemoteClient, 'list_page', 2)
    for _ in range(5):
        assert remote('create', 'Dummy', '--async') == 0
    capsys.readouterr()
    assert remote('--json', 'list') == 0
    ids = [s['id'] for s in out_json(capsys)]
    assert len(ids) == 5 and ids == sorted(ids, reverse=True)
    assert remote('--json', 'list', '--limit', '3') == 0
    assert [s['id'] for s in out_json(capsys)] == ids[:3]


def test_remote_create_waits_for_the_snapshot(snapshot_server, capsys,
                                                 monkeypatch, make_entities):
    from tests.conftest import Dummy
    make_entities(Dummy, 3)
    monkeypatch.setenv('LOVELY_GAE_TOKEN', snapshot_server.token)
    with app_worker():
        assert cli.main(['--url', snapshot_server.url, '--json', 'create',
                         '--timeout', '20']) == 0
    info = out_json(capsys)
    assert (info['status'], info['progress']['entities']) == ('finished', 3)


def test_no_token_says_how_to_give_one(snapshot_server, capsys,
                                       monkeypatch):
    monkeypatch.delenv('LOVELY_GAE_TOKEN', raising=False)
    assert cli.main(['--url', snapshot_server.url, 'list']) == 1
    assert capsys.readouterr().err == (
        'lovely-gae: error: a bearer token is required (HTTP 401); pass '
        '--token or set $LOVELY_GAE_TOKEN\n')


def test_a_wrong_token_is_one_line_and_exit_1(snapshot_server, capsys,
                                               tmp_path):
    code = cli.main(['--url', snapshot_server.url, '--token', 'guess',
                     'download', str(tmp_path)])
    assert code == 1
    assert capsys.readouterr().err == (
        'lovely-gae: error: wrong token (HTTP 403)\n')
    assert list(tmp_path.iterdir()) == []


def test_download_with_a_target_app_id_locally(store, capsys, tmp_path):
    demo_into(store)
    capsys.readouterr()
    out_dir = tmp_path / 'out'
    out_dir.mkdir()
    assert run(store, '--json', 'download', str(out_dir),
               '--target-app-id', 'dev~lovely-dev') == 0
    path = out_json(capsys)['path']
    with open(path, 'rb') as f:
        apps = {entities_module.EntityProto.FromString(d).key.app
                for d in devfile.iter_entities(f)}
    assert apps == {'dev~lovely-dev'}


def test_readme_starts_with_install_and_demo():
    import os
    readme = os.path.join(os.path.dirname(__file__), '..', 'README.rst')
    with open(readme, encoding='utf-8') as f:
        text = f.read()
    first = text.split('::\n\n', 1)[1].split('\n\n', 1)[0]
    assert 'pip install .' in first and first.rstrip().endswith(
        'lovely-gae demo')


def test_the_demo_needs_none_of_the_test_tools(tmp_path):
    """``pip install .`` brings no pytest, webtest or hypothesis."""
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = ('import sys\n'
              'for name in ("pytest", "webtest", "hypothesis"):\n'
              '    sys.modules[name] = None  # importing it fails\n'
              'from lovely_gae.cli import main\n'
              'sys.exit(main(["demo"]))\n')
    env = dict(os.environ, PYTHONPATH=root)
    env.pop('LOVELY_GAE_TOKEN', None)
    done = subprocess.run([sys.executable, '-c', script], cwd=str(tmp_path),
                          env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert 'byte for byte: yes' in done.stdout
    assert done.stderr == ''


def latest_id(store, capsys):
    capsys.readouterr()
    assert run(store, '--json', 'list') == 0
    return json.loads(capsys.readouterr().out)[0]['id']


def test_download_makes_its_directory_and_parents(store, capsys, tmp_path):
    demo_into(store)
    snapshot_id = latest_id(store, capsys)
    out_dir = tmp_path / 'new' / 'deeper'
    assert run(store, 'download', str(snapshot_id), str(out_dir)) == 0
    path = out_dir / ('snapshot.%d' % snapshot_id)
    assert capsys.readouterr().out.splitlines()[-1] == 'Saving to %s' % path
    assert sorted(os.listdir(str(out_dir))) == [path.name]


def test_an_app_that_refuses_connections_fails_at_once(capsys, monkeypatch,
                                                        tmp_path):
    """No retry can reach it: one line naming the URL, no waiting."""
    import socket
    from lovely_gae.snapshot.transfer import remote as remote_module

    def sleep(seconds):
        raise AssertionError('retried after %s seconds' % seconds)
    monkeypatch.setattr(remote_module.time, 'sleep', sleep)
    with socket.socket() as bound:  # bound, not listening: refused
        bound.bind(('127.0.0.1', 0))
        url = 'http://127.0.0.1:%d' % bound.getsockname()[1]
        for command in (['list'], ['create', 'Dummy'],
                        ['download', str(tmp_path / 'out')]):
            assert cli.main(['--url', url] + command) == 1
            assert capsys.readouterr().err == (
                'lovely-gae: error: cannot connect to %s: connection '
                'refused\n' % url)
    assert not (tmp_path / 'out').exists()


def test_only_what_a_retry_can_mend_is_retried():
    import socket
    import requests
    from lovely_gae.snapshot.transfer.remote import _unreachable

    def failed(cause, kind=requests.ConnectionError):
        try:
            try:
                raise cause
            except OSError:
                raise kind('failed')
        except kind as error:
            return error
    assert _unreachable(failed(ConnectionRefusedError(111, 'refused'))) == (
        'connection refused')
    assert _unreachable(failed(socket.gaierror(
        socket.EAI_NONAME, 'Name or service not known'))) == 'no such host'
    for mended in (failed(socket.gaierror(socket.EAI_AGAIN, 'try again')),
                   failed(ConnectionResetError(104, 'reset')),
                   failed(ConnectionRefusedError(111, 'refused'),
                          requests.ConnectTimeout)):
        assert _unreachable(mended) is None


# An OSC sequence that sets the terminal's title, and one that erases the
# line and writes over it: a kind name can hold either.
HOSTILE = 'K\x1b]0;owned\x07\r\x1b[2Kfinished'


def test_kind_names_reach_the_terminal_escaped(tmp_path, monkeypatch,
                                               capsys):
    """What ``list``, ``status`` and ``create`` print of kinds (and of
    namespaces, statuses, errors: with --url, whatever the app answers)
    reaches the terminal with its escape sequences shown, not acted on."""
    from google.appengine.api import datastore
    from lovely_gae import local
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv('GAE_APPLICATION', raising=False)
    store = str(tmp_path / 'data.datastore')
    with local.local_datastore(store):
        datastore.Put(datastore.Entity(HOSTILE))
    for command in (['create'], ['list'], ['status', '1'],
                    ['status', '2']):
        cli.main(['--datastore', store] + command)
    out, err = capsys.readouterr()
    assert "K\\x1b]0;owned\\x07\\r\\x1b[2Kfinished" in out
    assert not any(c in out + err for c in '\x1b\x07\r')


def test_download_masks_the_properties_named(store, capsys, tmp_path):
    """``--mask email --mask Other.phone``: every kind's email text is
    masked (equal texts alike), Other's phone is null, the rest as it was;
    a mask that names no property is a usage error."""
    from google.appengine.api import datastore
    from lovely_gae import local
    from lovely_gae.entities import EntityProto
    with local.local_datastore(store):
        datastore.Put([datastore.Entity('User', name=str(i)) for i in
                       range(3)])
        for number, entity in enumerate(datastore.Query('User').Get(3)):
            entity.update({'email': 'same@example.com' if number < 2
                           else 'other@example.com', 'phone': 5550100})
            datastore.Put(entity)
        other = datastore.Entity('Other')
        other.update({'email': 'same@example.com', 'phone': 5550100,
                      'note': 'kept'})
        datastore.Put(other)
    assert run(store, 'create', 'User', 'Other') == 0
    out_dir = tmp_path / 'out'
    assert run(store, 'download', str(out_dir), '--mask', 'email',
               '--mask', 'Other.phone') == 0
    [path] = out_dir.iterdir()
    with open(path, 'rb') as f:
        found = [EntityProto.FromString(record)
                 for record in devfile.iter_entities(f)]
    values = {}
    for entity in found:
        kind = entity.key.path.element[-1].type
        for prop in list(entity.property) + list(entity.raw_property):
            values.setdefault((kind, prop.name), []).append(prop.value)
    emails = [value.stringValue for value in values['User', 'email']]
    assert all(email.startswith(b'masked-') and len(email) == 23
               for email in emails)
    assert len(set(emails)) == 2  # the two equal ones alike
    assert values['Other', 'email'][0].stringValue in emails
    assert [value.int64Value for value in values['User', 'phone']] == [
        5550100] * 3
    assert not values['Other', 'phone'][0].ListFields()  # null
    assert values['Other', 'note'][0].stringValue == b'kept'
    capsys.readouterr()  # a mask that matches nothing: tests/test_mask.py
    with pytest.raises(SystemExit) as exit:
        run(store, 'download', str(tmp_path / 'x'), '--mask', 'User.')
    assert exit.value.code == 2
    assert "'User.' names no property" in capsys.readouterr().err
