"""Starting work over HTTP: creating a snapshot, restoring it (or a dry
run), deleting and pruning, and the worker that runs the tasks."""
import pytest
from google.appengine.ext import db

from lovely_gae import async_
from lovely_gae.snapshot.models import Snapshot
from tests.conftest import CREATE, SNAPSHOTS, Dummy, Yummy


def test_get_creates_a_snapshot_of_the_kinds_in_order(app, make_entities):
    res = app.get(CREATE + '?kinds=Yummy&kinds=Dummy&batchsize=50')
    snap = Snapshot.all().get()
    assert res.content_type == 'text/plain'
    assert res.text == "Created Snapshot %d\nKinds: ['Yummy', 'Dummy']" % (
        snap.id)
    assert snap.batchsize == 50


def test_post_with_a_form_creates_a_snapshot(app, make_entities):
    make_entities(Dummy, 3)
    res = app.post(CREATE, {'kinds': 'Dummy'})
    assert "Kinds: ['Dummy']" in res.text
    assert Snapshot.all().count() == 1


@pytest.mark.parametrize('query, reason', [
    ('batchsize=0', "invalid batchsize 0"),
    ('batchsize=abc', "invalid batchsize 'abc'"),
    ('batchsize=-1', "invalid batchsize '-1'"),
    ('kinds=', "invalid kind ''"),
    ('kinds=Dummy&kinds=__kind__', "invalid kind '__kind__'"),
    ('namespace=a%20b', "invalid namespace 'a b'"),
])
def test_bad_input_gets_400_with_a_one_line_reason(app, query, reason):
    for path in (CREATE + '?' + query, SNAPSHOTS + '?' + query):
        res = app.post(path, status=400)
        assert res.text.startswith(reason)
        assert res.text.count('\n') == 1
    assert Snapshot.all().count() == 0
    assert async_.get_tasks() == []


def test_post_creates_a_snapshot_and_answers_201(app, make_entities,
                                                 run_tasks):
    make_entities(Yummy, 3)
    res = app.post(SNAPSHOTS, {'kinds': ['Yummy'], 'batchsize': '2'},
                   status=201)
    assert res.json['status'] == 'started'
    assert res.json['kinds'] == ['Yummy']
    run_tasks(recursive=True)
    assert app.get('%s/%d' % (SNAPSHOTS, res.json['id'])).json[
        'progress']['entities'] == 3


def test_restore_dry_run_changes_nothing_and_restore_does(
        app, make_entities, finished_snapshot, run_tasks):
    keys = make_entities(Dummy, 10)
    snap = finished_snapshot(['Dummy'])
    db.delete(keys[:4])
    url = '%s/%d/restore' % (SNAPSHOTS, snap.id)
    res = app.post(url, {'dry_run': 'true'}, status=202)
    assert (res.json['dry_run'], res.json['plan']['status'],
            res.json['plan']['plan']) == (True, 'running', None)
    assert run_tasks(recursive=True) == 1  # its one range counted
    assert app.get('%s/%d' % (SNAPSHOTS, snap.id)).json['plan']['plan'] == {
        'Dummy': {'created': 4, 'changed': 0, 'deleted': 0}}
    assert Dummy.all().count() == 6
    res = app.post(url, {'kinds': 'Dummy'}, status=202)
    assert res.json['restore']['status'] == 'running'
    run_tasks(recursive=True)
    assert Dummy.all().count() == 10
    assert app.get('%s/%d' % (SNAPSHOTS, snap.id)).json['restore'][
        'status'] == 'finished'


def test_a_restore_is_shown_by_the_id_its_start_answered(
        app, make_entities, finished_snapshot, run_tasks, monkeypatch):
    """Restores of other kinds of one snapshot may run at once: each
    caller follows its own by the id its start answered, not the latest."""
    make_entities(Dummy, 3)
    make_entities(Yummy, 2)
    snap = finished_snapshot(['Dummy', 'Yummy'])
    other = finished_snapshot(['Dummy'])
    url = '%s/%d/restore' % (SNAPSHOTS, snap.id)
    mine = app.post(url, {'kinds': 'Dummy'}, status=202).json['restore']
    theirs = app.post(url, {'kinds': 'Yummy'}, status=202).json['restore']
    assert app.get('%s/%d' % (SNAPSHOTS, snap.id)).json['restore'][
        'id'] == theirs['id']
    path = '%s/%d/restores/%s' % (SNAPSHOTS, snap.id, mine['id'])
    # One get by key: the snapshot is not read.
    monkeypatch.setattr(Snapshot, 'get_by_id', lambda *args: pytest.fail(
        'the snapshot was read'))
    assert app.get(path).json == mine
    run_tasks(recursive=True)
    shown = app.get(path).json
    assert (shown['id'], shown['kinds'], shown['status'],
            shown['entities']) == (mine['id'], ['Dummy'], 'finished', 3)
    assert app.get('%s/%d/restores/%s' % (
        SNAPSHOTS, other.id, mine['id']), status=404).text == (
        'no restore %s of snapshot %d\n' % (mine['id'], other.id))
    assert app.get('%s/%d/restores/%s' % (SNAPSHOTS, snap.id, 'f' * 32),
                   status=404).text.startswith('no restore ')


def test_restore_refuses_unknown_kinds_and_unfinished_snapshots(
        app, make_entities, finished_snapshot):
    make_entities(Dummy, 3)
    snap = finished_snapshot(['Dummy'])
    res = app.post('%s/%d/restore' % (SNAPSHOTS, snap.id),
                   {'kinds': 'Yummy'}, status=400)
    assert res.text.startswith("invalid kind 'Yummy'")
    app.post('%s/%d/restore?dry_run=maybe' % (SNAPSHOTS, snap.id),
             status=400)
    started = app.post(SNAPSHOTS, {'kinds': 'Dummy'}).json
    res = app.post('%s/%d/restore' % (SNAPSHOTS, started['id']), status=409)
    assert res.text == 'snapshot %d is started, not finished\n' % (
        started['id'])
    assert len(async_.get_tasks()) == 1  # the new snapshot's own


def test_delete_and_prune(app, make_entities, finished_snapshot):
    make_entities(Dummy, 3)
    first, second, third = [finished_snapshot(['Dummy']) for _ in range(3)]
    res = app.post('%s/%d/delete' % (SNAPSHOTS, second.id))
    assert res.json == {'deleted': [second.id]}
    assert db.get(second.key()) is None
    assert app.post('/lovely.gae/prune', status=400).text == \
        'keep is required\n'
    app.post('/lovely.gae/prune?keep=-1', status=400)
    assert app.post('/lovely.gae/prune?keep=1').json == {
        'deleted': [first.id]}
    assert [s.id for s in Snapshot.all()] == [third.id]


def test_prune_deletes_only_the_prunable_ids_it_was_sent(
        app, make_entities, finished_snapshot):
    """``only``: the ids a user agreed to; the others stay, prunable or
    not (cron's GET sends none, and prunes all)."""
    make_entities(Dummy, 3)
    first, second, third = [finished_snapshot(['Dummy']) for _ in range(3)]
    assert app.post('/lovely.gae/prune?keep=1', {'only': [
        first.id, third.id]}).json == {'deleted': [first.id]}
    assert app.post('/lovely.gae/prune?keep=0&only=%d' % second.id).json == {
        'deleted': [second.id]}
    assert [s.id for s in Snapshot.all()] == [third.id]


def test_worker_runs_due_tasks_and_says_what_is_left(app, make_entities):
    make_entities(Dummy, 5)
    app.post(SNAPSHOTS, {'kinds': 'Dummy'})
    async_.defer(print, countdown=3600)
    answer = app.get('/lovely.gae/worker').json
    due_in = answer['next'].pop('due_in')
    assert 3500 < due_in <= 3600 and answer['next']['due'].endswith('Z')
    assert answer == {'ran': 3, 'queued': 1, 'next': {
        'task': 'print()', 'due': answer['next']['due'], 'held': False}}
    assert Snapshot.all().get().status == 'finished'
    answer = app.post('/lovely.gae/worker?seconds=5').json
    assert (answer['ran'], answer['queued'], answer['next']['task']) == (
        0, 1, 'print()')
    for bad in ('abc', '0', '-1', '1000', 'nan'):
        app.get('/lovely.gae/worker?seconds=' + bad, status=400)
