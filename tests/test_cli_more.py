"""The command line as people expect it from gcloud, gh, rq, pg_restore:
destructive commands ask, the queue and a downloaded file can be seen,
and progress off a terminal stays short."""
import io
import re
import json

import pytest

from lovely_gae import async_, cli
from lovely_gae.entities import EntityProto
from lovely_gae.snapshot import client as snapshot_client
from lovely_gae.snapshot.transfer import devfile
from lovely_gae.snapshot.transfer.devfile import DevFileWriter
from lovely_gae.snapshot.progress import BarProgress, LineProgress
from tests.conftest import demo_into
from tests.conftest import run_cli as run

FAILS = []


@async_.task
def flaky(value):
    if value in FAILS:
        raise ValueError('no %s today' % value)


@pytest.fixture
def store(store):
    FAILS.clear()
    return store


class Terminal(io.StringIO):
    """stdin on a terminal, where someone types ``answer``."""

    def isatty(self):
        return True


def typing(monkeypatch, answer):
    monkeypatch.setattr('sys.stdin', Terminal(answer + '\n'))


def demo(store, capsys):
    demo_into(store)
    capsys.readouterr()
    assert run(store, '--json', 'list') == 0
    [snap] = json.loads(capsys.readouterr().out)
    return snap['id']


# 1. Destructive commands ask.

@pytest.mark.parametrize('command', [['restore', 'ID'], ['delete', 'ID'],
                                     ['prune', '--keep', '0']])
def test_destructive_commands_refuse_without_a_terminal_or_yes(
        store, capsys, monkeypatch, command):
    snap_id = demo(store, capsys)
    command = [str(snap_id) if arg == 'ID' else arg for arg in command]
    monkeypatch.setattr('sys.stdin', io.StringIO(''))  # not a terminal
    assert run(store, *command) == 2
    captured = capsys.readouterr()
    assert captured.err == ('lovely-gae %s: error: asks before it deletes; '
                            'pass --yes to run it without a terminal\n'
                            % command[0])
    assert run(store, '--json', 'list') == 0
    assert [s['id'] for s in json.loads(capsys.readouterr().out)] == [
        snap_id]


def test_restore_shows_its_plan_and_asks(store, capsys, monkeypatch):
    from lovely_gae.local import local_datastore
    from lovely_gae.demo import NAMESPACE
    snap_id = demo(store, capsys)
    assert run(store, '--json', 'create', 'Customer', '--namespace',
               NAMESPACE) == 0
    newest = json.loads(capsys.readouterr().out)['id']
    assert run(store, '--json', 'status', str(snap_id)) == 0
    before = json.loads(capsys.readouterr().out)['restore']
    typing(monkeypatch, 'n')
    assert run(store, 'restore', str(snap_id)) == 1
    captured = capsys.readouterr()
    assert 'Customer: 0 created, 0 changed, 0 deleted' in captured.err
    assert 'Restore snapshot %d? [y/N]' % snap_id in captured.err
    assert captured.err.endswith('lovely-gae: nothing changed\n')
    assert run(store, '--json', 'status', str(snap_id)) == 0
    assert json.loads(capsys.readouterr().out)['restore'] == before
    with local_datastore(store):  # a customer the snapshot does not hold
        from google.appengine.api import datastore, namespace_manager
        namespace_manager.set_namespace(NAMESPACE)
        extra = datastore.Entity('Customer', name='extra')
        datastore.Put(extra)
        namespace_manager.set_namespace('')
    typing(monkeypatch, 'y')
    assert run(store, 'restore', str(newest), '--kinds', 'Customer') == 0
    captured = capsys.readouterr()
    assert ('\nCustomer: 0 created, 0 changed, 1 deleted\n'
            'It would delete 1 entity.\n') in captured.err
    assert re.fullmatch(r'Restore of snapshot %d: finished, [1-9]\d* '
                        r'entities put back, 1 deleted\n' % newest,
                        captured.out)


def test_restore_over_url_shows_the_apps_plan_and_asks(
        snapshot_server, make_entities, capsys, monkeypatch):
    from tests.conftest import Dummy
    from tests.test_cli import app_worker
    make_entities(Dummy, 3)
    monkeypatch.setenv('LOVELY_GAE_TOKEN', snapshot_server.token)

    def remote(*args):
        return cli.main(['--url', snapshot_server.url] + list(args))
    with app_worker():
        assert remote('--json', 'create', 'Dummy') == 0
        snap_id = json.loads(capsys.readouterr().out)['id']
        make_entities(Dummy, 2)  # not in the snapshot
        typing(monkeypatch, 'y')
        assert remote('restore', str(snap_id)) == 0
    captured = capsys.readouterr()
    assert ('What a restore of snapshot %d would change, by a dry run:\n'
            'Dummy: 0 created, 0 changed, 2 deleted\n'
            'It would delete 2 entities.\n' % snap_id) in captured.err
    assert captured.out == ('Restore of snapshot %d: finished, 3 entities '
                            'put back, 2 deleted\n' % snap_id)
    assert Dummy.all().count() == 3


def test_upload_says_what_it_replaces_and_asks(store, tmp_path, capsys,
                                               monkeypatch):
    from lovely_gae.demo import NAMESPACE
    from lovely_gae.local import local_datastore
    snap_id = demo(store, capsys)
    assert run(store, '--json', 'download', str(snap_id), str(tmp_path)) == 0
    path = json.loads(capsys.readouterr().out)['path']
    counts = devfile.check_file(path)

    def customer_names():
        with local_datastore(store, save=False):
            from google.appengine.api import datastore
            return sorted(e.get('name') for e in datastore.Query(
                'Customer', namespace=NAMESPACE).Run())
    with local_datastore(store):  # a change the upload would undo
        from google.appengine.api import datastore
        [first] = datastore.Query('Customer', namespace=NAMESPACE).Get(1)
        first['name'] = 'changed since'
        datastore.Put(first)
    changed = customer_names()
    monkeypatch.setattr('sys.stdin', io.StringIO(''))  # not a terminal
    assert run(store, 'upload', path) == 2
    assert capsys.readouterr().err == (
        'lovely-gae upload: error: asks before it replaces entities; pass '
        '--yes to run it without a terminal\n')
    typing(monkeypatch, 'n')
    assert run(store, 'upload', path) == 1
    captured = capsys.readouterr()
    assert 'Upload %s into %s: ' % (path, store) in captured.err
    assert ('%d entities (%s); entities with the same keys are replaced.'
            % (sum(counts.values()), ', '.join(
                '%s %d' % item for item in sorted(counts.items())))
            in captured.err)
    assert captured.err.endswith('lovely-gae: nothing changed\n')
    assert customer_names() == changed
    typing(monkeypatch, 'y')
    assert run(store, 'upload', path) == 0
    assert capsys.readouterr().out == 'Uploaded %d entities from %s\n' % (
        sum(counts.values()), path)
    assert 'changed since' not in customer_names()


def test_yes_skips_the_question(store, capsys, monkeypatch):
    snap_id = demo(store, capsys)
    monkeypatch.setattr('sys.stdin', io.StringIO(''))
    assert run(store, 'restore', str(snap_id), '--yes') == 0
    assert re.fullmatch(r'Restore of snapshot %d: finished, [1-9]\d* '
                        r'entities put back, 0 deleted\n' % snap_id,
                        capsys.readouterr().out)
    assert run(store, 'delete', str(snap_id), '--yes') == 0
    assert capsys.readouterr().out == 'Deleted snapshot %d\n' % snap_id


def test_delete_and_prune_say_what_they_delete(store, capsys, monkeypatch):
    snap_id = demo(store, capsys)
    typing(monkeypatch, 'no')
    assert run(store, 'delete', str(snap_id)) == 1
    err = capsys.readouterr().err
    assert 'Delete snapshot %d (finished' % snap_id in err
    typing(monkeypatch, 'n')
    assert run(store, 'prune', '--keep', '0') == 1
    assert 'Prune deletes snapshots: %d' % snap_id in capsys.readouterr().err
    assert run(store, 'prune', '--keep', '1') == 0  # deletes none: no question
    assert capsys.readouterr().out == 'Deleted snapshots: none\n'
    typing(monkeypatch, 'yes')
    assert run(store, 'prune', '--keep', '0') == 0
    assert capsys.readouterr().out == 'Deleted snapshots: %d\n' % snap_id


def test_prune_deletes_only_the_snapshots_it_asked_about(
        store, capsys, monkeypatch):
    """``prune --keep 1`` lists what it will delete and asks; a snapshot
    that finishes while the question waits (cron's nightly one) would push
    out one more, which nobody was asked about: it stays."""
    from lovely_gae import cliask
    from lovely_gae.demo import NAMESPACE
    from lovely_gae.snapshot import api
    first = demo(store, capsys)
    assert run(store, '--json', 'create', 'Customer', '--namespace',
               NAMESPACE) == 0
    second = json.loads(capsys.readouterr().out)['id']
    real_confirm = cliask.confirm

    def confirm(args, what, question, does='deletes'):
        api.create_snapshot(['Order'], namespace=NAMESPACE)
        async_.run_tasks(recursive=True)
        return real_confirm(args, what, question, does)
    monkeypatch.setattr(cliask, 'confirm', confirm)
    typing(monkeypatch, 'yes')
    assert run(store, '--json', 'prune', '--keep', '1') == 0
    captured = capsys.readouterr()
    assert 'Prune deletes snapshots: %d\n' % first in captured.err
    assert json.loads(captured.out)['deleted'] == [first], (
        'asked about %d alone' % first)
    assert run(store, '--json', 'list') == 0
    assert second in [s['id'] for s in json.loads(capsys.readouterr().out)]


# 2. The queue.

def test_retry_and_drop_failed_tasks(gae_testbed, run_tasks):
    FAILS[:] = ['a', 'b']
    for value in ('a', 'b', 'c'):
        async_.defer(flaky, args=(value,), max_attempts=1)
    run_tasks()
    assert len(async_.get_failed_tasks()) == 2
    assert async_.count_leased() == 0
    FAILS[:] = ['b']
    assert async_.retry_failed() == 2
    [queued, _] = async_.get_tasks()
    assert queued.attempts == 0 and async_.get_failed_tasks() == []
    run_tasks()
    [failed] = async_.get_failed_tasks()
    assert failed.arguments() == (['b'], {})
    assert async_.drop_failed() == 1
    assert async_.get_failed_tasks() == [] and async_.get_tasks() == []


def queue_with_failures(store):
    from lovely_gae.local import local_datastore
    FAILS[:] = ['x']
    with local_datastore(store):
        async_.defer(flaky, args=('x',), max_attempts=1)
        async_.run_tasks()
        async_.defer(flaky, args=('y',), countdown=3600)


def test_queue_shows_counts_and_failed_tasks(store, capsys):
    queue_with_failures(store)
    assert run(store, 'queue') == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == 'queued: 1, leased: 0, failed: 1'
    assert ('tests.test_cli_more:flaky  attempts: 1  ValueError: no x today'
            in out)
    assert run(store, '--json', 'queue') == 0
    data = json.loads(capsys.readouterr().out)
    assert (data['queued'], data['leased'], data['failed']) == (1, 0, 1)
    assert data['failed_tasks'][0]['error'] == 'ValueError: no x today'


def test_worker_and_queue_say_what_waits_and_when_it_falls_due(
        store, capsys, monkeypatch):
    """A snapshot deleted over ``serve`` leaves a purge due a lease
    later: ``worker`` ran nothing, and says what waits, and for how long."""
    import datetime
    from lovely_gae.local import local_datastore
    from lovely_gae.snapshot.work.ranges import purge_snapshot
    with local_datastore(store):
        task = async_.defer(purge_snapshot, args=(605,), countdown=600)
    monkeypatch.setattr('lovely_gae.snapshot.calls.utcnow', lambda: (
        task.due - datetime.timedelta(seconds=598)))
    assert run(store, 'worker') == 0
    assert capsys.readouterr().out == (
        'Ran 0 tasks; 1 queued, next: purge_snapshot(605), due in 9 min '
        '58 s\n')
    assert run(store, '--json', 'worker') == 0
    assert json.loads(capsys.readouterr().out) == {
        'ran': 0, 'queued': 1, 'next': {
            'task': 'purge_snapshot(605)', 'due_in': 598.0, 'held': False,
            'due': task.due.isoformat() + 'Z'}}
    assert run(store, 'queue') == 0
    assert capsys.readouterr().out.splitlines() == [
        'queued: 1, leased: 0, failed: 0',
        'next: purge_snapshot(605), due in 9 min 58 s']


def test_one_of_a_thing_is_not_plural(store, capsys, monkeypatch):
    """``Ran 1 task``, ``Delete 1 snapshot?``: not ``1 tasks``."""
    from lovely_gae import clitext
    from lovely_gae.local import drain, local_datastore
    from lovely_gae.snapshot import api
    from tests.conftest import Dummy
    assert [clitext.count(n, 'snapshot') for n in (0, 1, 2)] == [
        '0 snapshots', '1 snapshot', '2 snapshots']
    with local_datastore(store):
        Dummy(title='a').put()
        for _ in range(2):
            api.create_snapshot(['Dummy'])
            drain()
        async_.defer(int)
    assert run(store, 'worker') == 0
    assert capsys.readouterr().out == 'Ran 1 task; 0 queued\n'
    monkeypatch.setattr('sys.stdin', Terminal('n\n'))
    assert run(store, 'prune', '--keep', '1') == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        'Delete 1 snapshot? [y/N] lovely-gae: nothing changed')


def test_queue_retry_and_drop(store, capsys, monkeypatch):
    queue_with_failures(store)
    assert run(store, 'queue', '--retry') == 0
    assert capsys.readouterr().out == 'Queued 1 failed task again\n'
    assert run(store, 'worker') == 0  # 'x' fails again
    capsys.readouterr()
    monkeypatch.setattr('sys.stdin', io.StringIO(''))
    assert run(store, 'queue', '--drop') == 2
    assert '--yes' in capsys.readouterr().err
    assert run(store, 'queue', '--drop', '--yes') == 0
    assert capsys.readouterr().out == 'Deleted 1 failed task\n'
    assert run(store, '--json', 'queue') == 0
    assert json.loads(capsys.readouterr().out)['failed'] == 0


def test_queue_over_url_says_it_is_not_available(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(['--url', 'http://127.0.0.1:9', 'queue'])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err == ('lovely-gae queue: error: an app\'s task queue is not '
                   'available over --url, only a local datastore file\'s\n')


# 3. What a downloaded file holds.

def test_inspect_lists_namespaces_kinds_counts_and_keys(store, capsys,
                                                        tmp_path):
    demo(store, capsys)
    assert run(store, 'download', str(tmp_path / 'out')) == 0
    [path] = (tmp_path / 'out').iterdir()
    capsys.readouterr()
    assert run(store, 'inspect', str(path)) == 0
    out = capsys.readouterr().out
    assert "Namespace 'lovely-gae-demo'" in out
    assert '  Customer: 250 entities, keys Customer:' in out
    assert run(store, '--json', 'inspect', str(path)) == 0
    data = json.loads(capsys.readouterr().out)
    assert data['entities'] == 850
    [namespace] = data['namespaces']
    assert namespace['namespace'] == 'lovely-gae-demo'
    kinds = {k['kind']: k for k in namespace['kinds']}
    assert kinds['Order']['entities'] == 600
    assert kinds['Customer']['first_key'] < kinds['Customer']['last_key']


def test_inspect_keys_are_in_datastore_order_and_printable(tmp_path):
    from google.appengine.api import datastore_types
    from lovely_gae import entities
    from lovely_gae.entities import EntityProto

    def record(*path, namespace=''):
        key = datastore_types.Key.from_path(*path, _app='app',
                                            namespace=namespace)
        entity = EntityProto()
        entity.key.CopyFrom(entities.ref(key))
        entity.entity_group.element.add().CopyFrom(
            entity.key.path.element[0])
        return entity.SerializeToString()
    path = tmp_path / 'file'
    with open(path, 'wb') as fileobj:
        writer = devfile.DevFileWriter(fileobj)
        writer.add_many([record('K', 'b\x1b[2J'), record('K', 9),
                         record('K', 'a'), record('K', 10),
                         record('P', 1, 'C', 2, namespace='ns')])
        writer.close()
    summary = devfile.summarize(str(path))
    assert summary == {'entities': 5, 'app_ids': ['app'], 'namespaces': [
        {'namespace': '', 'kinds': [
            {'kind': 'K', 'entities': 4, 'first_key': 'K:9',
             'last_key': "K:'b\\x1b[2J'"}]},
        {'namespace': 'ns', 'kinds': [
            {'kind': 'C', 'entities': 1, 'first_key': 'P:1/C:2',
             'last_key': 'P:1/C:2'}]}]}


def test_inspect_refuses_a_damaged_file(store, capsys, tmp_path):
    path = tmp_path / 'bad'
    path.write_bytes(b'\x80\x03cos\nsystem\n')
    assert run(store, 'inspect', str(path)) == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'not a datastore file' in err


# 4. Progress off a terminal.

class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_inspect_of_a_kind_that_is_not_utf8_is_a_one_line_error(
        tmp_path, monkeypatch, capsys):
    """A kind that is not UTF-8 (protobuf hands it over as bytes) is a
    damaged entity to ``inspect``, in one line, as to ``verify``."""
    monkeypatch.chdir(tmp_path)
    entity = EntityProto()
    entity.key.app = 'a'
    element = entity.key.path.element.add()
    element.type, element.id = 'K', 1
    entity.entity_group.element.add().CopyFrom(element)
    record = entity.SerializeToString().replace(b'\x12\x01K', b'\x12\x01\xff')
    path = str(tmp_path / 'snapshot.1')
    with open(path, 'wb') as f:
        writer = DevFileWriter(f)
        writer.add_many([record])
        writer.close()
    assert cli.main(['inspect', path]) == 1
    assert capsys.readouterr().err == (
        'lovely-gae: error: %s: entity 1: its key is damaged\n' % path)


def test_progress_off_a_terminal_prints_a_line_per_tenth_or_ten_seconds():
    stream, clock = io.StringIO(), Clock()
    progress = snapshot_client.progress_for(stream=stream, clock=clock)
    progress('start', snapshot_id=7, ranges=200, bytes=0)
    for position in range(1, 201):
        progress('range', name='R%d' % position, position=position,
                 total=200, bytes=1)
    progress('save', path='out/snapshot.7')
    lines = stream.getvalue().splitlines()
    assert lines[0] == 'Downloading snapshot: 7'
    assert lines[-1] == 'Saving to out/snapshot.7'
    assert [line.split()[1] for line in lines[1:-1]] == [
        'R%d' % (20 * n) for n in range(1, 11)]
    stream, clock = io.StringIO(), Clock()
    progress = snapshot_client.progress_for(stream=stream, clock=clock)
    progress('start', snapshot_id=7, ranges=1000, bytes=0)
    for position in range(1, 51):  # 5 % of it, a second each
        clock.now += 1
        progress('range', name='R%d' % position, position=position,
                 total=1000, bytes=1)
    assert [line.split()[1] for line in stream.getvalue().splitlines()[1:]
            ] == ['R10', 'R20', 'R30', 'R40', 'R50']


def test_progress_off_a_terminal_estimates_only_what_it_measured():
    """No time left before a range has come in: the seed's guess of a
    second a range said ten seconds for a tenth of a second's download."""
    stream, clock = io.StringIO(), Clock()
    progress = snapshot_client.progress_for(stream=stream, clock=clock)
    progress('start', snapshot_id=7, ranges=4, bytes=4)
    for position in range(1, 5):
        progress('range', name='R%d' % position, position=position,
                 total=4, bytes=1)
        clock.now += 0.5  # the range comes in
    assert stream.getvalue().splitlines() == [
        'Downloading snapshot: 7',
        'Downloading R1 pos: 1/4',
        'Downloading R2 pos: 2/4 remaining: 1.5 seconds',
        'Downloading R3 pos: 3/4 remaining: 1.0 seconds',
        'Downloading R4 pos: 4/4 remaining: 0.5 seconds']


def test_the_bar_shows_no_rate_before_bytes_came_in(capsys):
    progress = BarProgress()
    progress('start', snapshot_id=7, ranges=10, bytes=19023)
    progress('range', name='R1', position=1, total=10, bytes=2728)
    assert '<?, ?B/s' in capsys.readouterr().err.split('\r')[-1]
    progress('save', path='out')


def test_progress_on_a_terminal_is_a_bar():
    assert isinstance(snapshot_client.progress_for(stream=Terminal()),
                      snapshot_client.BarProgress)


ESCAPE = '\x1b]2;owned\x07\x1b[2J'


def test_the_line_progress_escapes_an_apps_status(capsys):
    stream = io.StringIO()
    clock = iter([0, 0, 20]).__next__
    progress = LineProgress(stream, clock)
    progress('work', name='snapshot 1', status=ESCAPE, done=0, total=3)
    progress('work', name='snapshot 1', status=ESCAPE, done=1, total=3)
    assert '\x1b' not in stream.getvalue()


def test_the_bar_escapes_an_apps_status(capsys):
    progress = BarProgress()
    progress('work', name='snapshot 1', status=ESCAPE, done=1, total=3)
    progress('work_end', name='snapshot 1')
    err = capsys.readouterr().err
    assert 'owned' in err  # shown...
    assert '\x1b]2' not in err and '\x1b[2J' not in err  # ...escaped
