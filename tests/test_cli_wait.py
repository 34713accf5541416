"""One waiting rule for a local datastore file and for ``--url``: create,
restore and its dry run wait with progress; ``--async`` returns at once;
``--timeout`` bounds the wait, and a wait that runs out says so on one
line and exits 1."""
import contextlib
import io
import json

import pytest

from lovely_gae import async_, cli
from lovely_gae.snapshot import progress as progress_module
from tests.conftest import Dummy, run_cli
from tests.test_cli import app_worker
from tests.test_cli_more import Terminal, demo


def idle(monkeypatch):
    """Within: a worker that does not run (locally; the app's tasks run
    only when the test says so)."""
    patch = monkeypatch.context()
    patched = patch.__enter__()
    patched.setattr(async_, 'run_tasks', lambda *args, **kwargs: 0)
    return patch


@pytest.fixture(params=['local', 'remote'])
def way(request, store, capsys, monkeypatch):
    """``way(*args)``: the CLI on a datastore file, or over --url on the
    app (whose tasks nobody runs), with ``way.run_tasks()`` to run them;
    ``way.working()`` for the tasks to run meanwhile; ``way.name`` says
    which."""
    if request.param == 'local':
        from lovely_gae.local import local_datastore
        with local_datastore(store):
            Dummy(title='a').put()

        def call(*args):
            return run_cli(store, *args)
        call.run_tasks = lambda: run_cli(store, 'worker')
        call.working = contextlib.nullcontext  # the command runs them
    else:
        server = request.getfixturevalue('snapshot_server')
        monkeypatch.setenv('LOVELY_GAE_TOKEN', server.token)
        Dummy(title='a').put()

        def call(*args):
            return cli.main(['--url', server.url] + list(args))
        call.run_tasks = lambda: async_.run_tasks(recursive=True)
        call.working = app_worker
    call.name = request.param
    capsys.readouterr()
    return call


def hint(way):
    """What a wait that ran out adds: locally, nothing runs the work but a
    worker; over --url, the app's workers run it."""
    return '; run `lovely-gae worker` to finish it' if (
        way.name == 'local') else ''


def created(way, capsys, *args):
    assert way('--json', 'create', 'Dummy', *args) == 0
    return json.loads(capsys.readouterr().out)


def test_async_returns_at_once_with_the_id(way, capsys):
    snap = created(way, capsys, '--async')
    assert (snap['status'], snap['kinds']) == ('started', ['Dummy'])
    way.run_tasks()
    capsys.readouterr()
    assert way('--json', 'status', str(snap['id'])) == 0
    assert json.loads(capsys.readouterr().out)['status'] == 'finished'


def test_async_says_locally_that_a_worker_finishes_it(way, capsys):
    assert way('create', 'Dummy', '--async') == 0
    lines = capsys.readouterr().out.splitlines()
    snapshot_id = lines[0].split()[2].rstrip(';')
    assert lines[0] == 'Created Snapshot %s%s' % (snapshot_id, hint(way))
    assert lines[1] == 'Snapshot %s: started' % snapshot_id
    way.run_tasks()
    capsys.readouterr()
    assert way('restore', snapshot_id, '--dry-run', '--async') == 0
    assert capsys.readouterr().out == 'Dry run of snapshot %s: %s%s\n' % (
        snapshot_id, 'running', hint(way))
    assert way('restore', snapshot_id, '--yes', '--async') == 0
    assert capsys.readouterr().out == (
        'Restore of snapshot %s: running%s\n' % (snapshot_id, hint(way)))


def test_a_wait_that_runs_out_says_so_and_exits_1(way, capsys, monkeypatch):
    patch = idle(monkeypatch)
    assert way('create', 'Dummy', '--timeout', '0.2') == 1
    out, err = capsys.readouterr()
    snapshot_id = int(err.split()[3])
    assert (out, err.splitlines()[-1]) == ('', 'lovely-gae: error: snapshot '
                                           '%d still waiting to start after '
                                           '0.2 s%s' % (snapshot_id,
                                                        hint(way)))
    assert way('--json', 'create', 'Dummy', '--timeout', '0.2') == 1
    error = json.loads(capsys.readouterr().err.splitlines()[-1])
    expected = {'error': 'snapshot %d still waiting to start after '
                '0.2 s' % error['id'], 'type': 'StillWorking',
                'exit': 1, 'id': error['id'], 'status': 'started',
                'work': 'snapshot', 'seconds': 0.2}
    if hint(way):
        expected['hint'] = hint(way)[2:]
    assert error == expected
    # What was started is kept (locally: saved), and goes on later.
    patch.__exit__(None, None, None)
    way.run_tasks()
    capsys.readouterr()
    assert way('--json', 'status', str(snapshot_id)) == 0
    assert json.loads(capsys.readouterr().out)['status'] == 'finished'


def test_restore_and_its_dry_run_wait_alike(way, capsys, monkeypatch):
    snap = created(way, capsys, '--async')
    way.run_tasks()
    capsys.readouterr()
    snapshot_id = str(snap['id'])
    patch = idle(monkeypatch)
    assert way('restore', snapshot_id, '--dry-run', '--timeout', '0.2') == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        'lovely-gae: error: dry run of snapshot %s still running after '
        '0.2 s%s' % (snapshot_id, hint(way)))
    assert way('restore', snapshot_id, '--yes', '--timeout', '0') == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        'lovely-gae: error: restore of snapshot %s still running after '
        '0 s%s' % (snapshot_id, hint(way)))
    patch.__exit__(None, None, None)
    way.run_tasks()
    capsys.readouterr()
    assert way('--json', 'restore', snapshot_id, '--dry-run', '--async') == 0
    answer = json.loads(capsys.readouterr().out)
    assert (answer['id'], answer['dry_run'], answer['plan']['status']) == (
        snap['id'], True, 'running')
    with way.working():
        assert way('--json', 'restore', snapshot_id, '--dry-run',
                   '--timeout', '60') == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer['plan']['plan'] == {
        'Dummy': {'created': 0, 'changed': 0, 'deleted': 0}}


def test_the_local_wait_shows_progress_off_a_terminal(store, capsys,
                                                      monkeypatch):
    """Lines once the work has gone on ``every`` seconds (here 0), then
    per tenth or ``every`` seconds."""
    from lovely_gae.local import local_datastore
    with local_datastore(store):
        for i in range(30):
            Dummy(title=str(i)).put()
    monkeypatch.setattr(progress_module.LineProgress, 'every', 0)
    assert run_cli(store, 'create', 'Dummy', '--batchsize', '10') == 0
    out, err = capsys.readouterr()
    assert out.startswith('Created Snapshot ')
    snapshot_id = out.split()[2]
    lines = err.splitlines()
    assert lines[0] == 'snapshot %s: started, 0/? ranges' % snapshot_id
    assert lines[-1] == 'snapshot %s: finished, 3/3 ranges' % snapshot_id


def test_work_lines_off_a_terminal_wait_ten_seconds_then_a_tenth():
    stream, now = io.StringIO(), [0.0]
    progress = progress_module.progress_for(stream=stream,
                                            clock=lambda: now[0])
    for seconds, done, total in ((0, 0, None), (5, 1, None), (10, 2, 20),
                                 (11, 3, 20), (12, 4, 20), (25, 4, 20),
                                 (26, 20, 20)):
        now[0] = seconds
        progress('work', name='snapshot 7', status='storing', done=done,
                 total=total)
    progress('work_end', name='snapshot 7')
    assert stream.getvalue().splitlines() == [
        'snapshot 7: storing, 2/20 ranges',  # after ten seconds
        'snapshot 7: storing, 4/20 ranges',  # a tenth more
        'snapshot 7: storing, 4/20 ranges',  # ten seconds more
        'snapshot 7: storing, 20/20 ranges']


def test_upload_tells_its_progress_in_entities(store, capsys, tmp_path,
                                               monkeypatch):
    from lovely_gae.local import local_datastore
    with local_datastore(store):
        for i in range(30):
            Dummy(title=str(i)).put()
    assert run_cli(store, 'create', 'Dummy') == 0
    capsys.readouterr()
    assert run_cli(store, '--json', 'download', str(tmp_path / 'out')) == 0
    path = json.loads(capsys.readouterr().out)['path']
    monkeypatch.setattr(progress_module.LineProgress, 'every', 0)
    assert run_cli(store, 'upload', path, '--yes') == 0
    out, err = capsys.readouterr()
    assert out == 'Uploaded 30 entities from %s\n' % path
    assert err == 'upload of %s: uploading, 30/30 entities\n' % path


def test_status_shows_the_ranges_of_each_kind(way, capsys):
    snap = created(way, capsys, '--async')
    assert way('status', str(snap['id'])) == 0
    assert '\n  Dummy: 0/? ranges\n' in capsys.readouterr().out + '\n'
    way.run_tasks()
    capsys.readouterr()
    with way.working():
        assert way('restore', str(snap['id']), '--dry-run') == 0
    capsys.readouterr()
    assert way('status', str(snap['id'])) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[4].startswith('Ranges: 1/1, entities: 1, stored bytes: ')
    assert lines[5:] == ['  Dummy: 1/1 ranges',
                         'Last dry run: finished, ranges 1/1',
                         '  Dummy: 1/1 ranges']


def test_status_of_work_under_way_reads_per_kind():
    from lovely_gae import clitext
    info = {'id': 7, 'status': 'storing', 'kinds': ['Order', 'Customer'],
            'namespace': '', 'created': '2026-12-07T06:00:00Z',
            'error': None, 'plan': None,
            'progress': {'ranges_done': 3, 'ranges_total': None,
                         'entities': 0, 'bytes': 0, 'by_kind': {
                             'Customer': {'ranges_done': 2,
                                          'ranges_total': 2},
                             'Order': {'ranges_done': 1,
                                       'ranges_total': None}}},
            'restore': {'status': 'running', 'ranges_done': 4,
                        'ranges_total': 10, 'error': None, 'by_kind': {
                            'Customer': {'ranges_done': 4,
                                         'ranges_total': 4},
                            'Order': {'ranges_done': 0,
                                      'ranges_total': 6}}}}
    assert clitext.describe(info).splitlines() == [
        'Snapshot 7: storing', 'Kinds: Order, Customer', "Namespace: ''",
        'Created: 2026-12-07T06:00:00Z',
        'Ranges: 3/?, entities: 0, stored bytes: 0',
        '  Customer: 2/2 ranges', '  Order: 1/? ranges',
        'Last restore: running, ranges 4/10',
        '  Customer: 4/4 ranges', '  Order: 0/6 ranges']


# Which restore a command waits for: its own, not the snapshot's latest.

def test_restore_reports_the_outcome_of_its_own_restore(
        store, capsys, monkeypatch, fast_retries):
    """Someone else (a colleague, the page) restores another kind of the
    same snapshot meanwhile, which the per-kind locks allow: the command
    reports its own restore, which fails for good, not that one."""
    from lovely_gae import local
    from lovely_gae.snapshot import api
    from lovely_gae.snapshot.work import putback
    snap_id = demo(store, capsys)
    real_restore = local.LocalClient.restore_snapshot
    real_put_back = putback.put_back

    def restore_snapshot(self, snapshot_id, kinds=None, dry_run=False):
        answer = real_restore(self, snapshot_id, kinds, dry_run)
        # Another caller restores Order, a kind this restore does not lock.
        api.get_snapshot(snapshot_id).restore(kinds=['Order'])
        return answer

    def put_back(backups, namespace, counting=False):
        if not counting and backups and backups[0].range_kind == 'Customer':
            raise RuntimeError('the datastore refuses this put')
        return real_put_back(backups, namespace, counting)
    monkeypatch.setattr(local.LocalClient, 'restore_snapshot',
                        restore_snapshot)
    monkeypatch.setattr(putback, 'put_back', put_back)
    status = run_cli(store, '--json', 'restore', str(snap_id), '--kinds',
                     'Customer', '--yes')
    out = json.loads(capsys.readouterr().out)
    # Order's restore, the snapshot's latest, finished: 600 entities back.
    assert (status, out['restore']['kinds'], out['restore']['status']) == (
        1, ['Customer'], 'error'), (status, out['restore'])


def test_restore_asks_with_the_plan_of_its_own_dry_run(
        store, capsys, monkeypatch):
    """Without ``--yes``, ``restore`` shows the counts of its own dry run,
    not of one of other kinds started meanwhile (the page's "Dry run of a
    restore", of Order alone)."""
    from lovely_gae import cliask, local
    from lovely_gae.snapshot import api
    snap_id = demo(store, capsys)
    real_restore = local.LocalClient.restore_snapshot

    def restore_snapshot(self, snapshot_id, kinds=None, dry_run=False):
        answer = real_restore(self, snapshot_id, kinds, dry_run)
        if dry_run:
            api.get_snapshot(snapshot_id).restore(kinds=['Order'],
                                                  dry_run=True)
        return answer
    asked = []

    def confirm(args, what, question, does='deletes'):
        asked.append(what)
        return False
    monkeypatch.setattr(local.LocalClient, 'restore_snapshot',
                        restore_snapshot)
    monkeypatch.setattr(cliask, 'confirm', confirm)
    monkeypatch.setattr('sys.stdin', Terminal('n\n'))
    run_cli(store, 'restore', str(snap_id), '--kinds', 'Customer')
    [what] = asked
    assert 'Customer' in what and 'Order' not in what, what
