"""One client: the same calls on a local datastore (``LocalClient``) and
over HTTP (``RemoteClient`` against the app on a real loopback server)
answer the same shapes, written once in ``snapshot.calls``; and both wait
by the same rule (``waiting.wait``)."""
import pytest

from lovely_gae.exceptions import (LovelyGaeError, RestoreNotFound,
                                   SnapshotNotFound)
from lovely_gae.local import LocalClient
from lovely_gae.snapshot import waiting
from lovely_gae.snapshot.transfer.remote import RemoteClient
from tests.conftest import Dummy

#: Values that differ from one snapshot to the next, by their keys.
_VARYING = ('id', 'created', 'modified', 'deleted')


def shape(value, key=None):
    """``value`` with what varies between two runs (ids, times) replaced
    by its type's name."""
    if key in _VARYING:
        return type(value).__name__
    if isinstance(value, dict):
        return {k: shape(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return value


def every_call(client, run_tasks):
    """Each call of a client once, in the order a user makes them; what
    each answered."""
    answers = {}
    answers['create'] = client.create_snapshot(['Dummy'], 10)
    snapshot_id = answers['create']['id']
    run_tasks(recursive=True)
    answers['list'] = client.list_snapshots()
    answers['status'] = client.get_snapshot(snapshot_id)
    Dummy.all().get().delete()
    answers['dry run'] = client.restore_snapshot(snapshot_id, dry_run=True)
    run_tasks(recursive=True)
    answers['plan'] = client.get_snapshot(snapshot_id)['plan']
    answers['restore'] = client.restore_snapshot(snapshot_id, ['Dummy'])
    answers['worker'] = client.run_worker()
    answers['restored'] = client.get_snapshot(snapshot_id)['restore']
    answers['own restore'] = client.get_restore(
        snapshot_id, answers['restore']['restore']['id'])
    with pytest.raises(RestoreNotFound) as info:  # not this one's
        client.get_restore(snapshot_id + 1, answers['own restore']['id'])
    assert str(info.value) == 'no restore %s of snapshot %d' % (
        answers['own restore']['id'], snapshot_id + 1)
    answers['delete'] = client.delete_snapshot(snapshot_id)
    run_tasks(recursive=True)
    answers['prune'] = client.prune(0)
    with pytest.raises(SnapshotNotFound) as info:
        client.get_snapshot(snapshot_id)
    assert info.value.snapshot_id == snapshot_id
    assert str(info.value) == 'no snapshot with id %d' % snapshot_id
    with pytest.raises(LovelyGaeError) as info:
        client.create_snapshot(['Nothing'], allow_empty=False)
    answers['empty kind'] = str(info.value)
    return answers


@pytest.fixture
def remote(snapshot_server):
    with RemoteClient(snapshot_server.url, snapshot_server.token) as client:
        yield client


def test_local_and_remote_calls_answer_the_same_shapes(
        make_entities, run_tasks, remote):
    make_entities(Dummy, 30)
    local = every_call(LocalClient(), run_tasks)
    over_http = every_call(remote, run_tasks)
    assert local['create']['status'] == 'started'  # it does not wait
    assert local['plan']['plan'] == {
        'Dummy': {'created': 1, 'changed': 0, 'deleted': 0}}
    assert local['restore']['dry_run'] is False
    assert local['worker']['ran'] > 0 and local['restored']['status'] == (
        'finished')
    for answers in (local, over_http):
        assert answers['own restore'] == answers['restored']
    assert local['empty kind'].startswith(
        "kind 'Nothing' has no entities in namespace ''")
    assert over_http['empty kind'].startswith(local['empty kind'])
    over_http['empty kind'] = local['empty kind']
    for call in local:
        assert shape(over_http[call]) == shape(local[call]), call
    assert Dummy.all().count() == 30


def test_both_clients_list_every_snapshot_over_the_pages(
        make_entities, remote, monkeypatch):
    """The app sends a page of snapshots at a time; ``list_snapshots``
    (``lovely-gae list``, and ``prune``'s question) gets them all."""
    from lovely_gae.snapshot import calls
    make_entities(Dummy, 1)
    ids = [remote.create_snapshot(['Dummy'])['id'] for _ in range(7)][::-1]
    monkeypatch.setattr(calls, 'LIST_PAGE', 2)  # the app's, and local
    monkeypatch.setattr(calls, 'MAX_LIST_PAGE', 3)
    remote.list_page = 2
    for client in (remote, LocalClient()):
        assert [s['id'] for s in client.list_snapshots()] == ids
        assert [s['id'] for s in client.list_snapshots(5)] == ids[:5]
    asked = []
    monkeypatch.setattr(remote, 'json', lambda method, path, **kw: (
        asked.append(kw['params']) or {'snapshots': [], 'next': 'x'}))
    assert remote.list_snapshots(5) == []  # no snapshots: no next page
    assert asked == [{'limit': 2}]


def test_the_app_allows_a_kind_without_entities_by_default(remote):
    snap = remote.create_snapshot(['Nothing'])  # allowed by default
    assert snap['kinds'] == ['Nothing']


class Idle:
    """A client whose work never moves: a worker that does not run."""

    poll_seconds = 0.01

    def __init__(self, client):
        self.client, self.paused = client, 0

    def get_snapshot(self, snapshot_id):
        return self.client.get_snapshot(snapshot_id)

    def pause(self, seconds):
        self.paused += 1


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 0.25
        return self.now


@pytest.mark.parametrize('which', ['local', 'remote'])
def test_a_wait_that_runs_out_says_so(make_entities, remote, which):
    make_entities(Dummy, 3)
    client = LocalClient() if which == 'local' else remote
    created = client.create_snapshot(['Dummy'])
    idle = Idle(client)
    events = []
    with pytest.raises(waiting.StillWorking) as info:
        waiting.wait(idle, created['id'], timeout=2, clock=Clock(),
                     progress=lambda event, **kw: events.append(event))
    assert str(info.value) == (
        'snapshot %d still waiting to start after 2 s' % created['id'])
    assert (info.value.snapshot_id, info.value.status) == (
        created['id'], 'started')
    assert idle.paused >= 3 and events[-1] == 'work_end'
    assert set(events[:-1]) == {'work'}


def test_a_local_wait_runs_the_tasks(make_entities):
    make_entities(Dummy, 25)
    client = LocalClient()
    created = client.create_snapshot(['Dummy'], 10)
    seen = []
    info = waiting.wait(client, created['id'], progress=lambda event, **kw:
                        seen.append((event, kw.get('status'))))
    assert (info['status'], info['progress']['ranges_done']) == (
        'finished', 3)
    assert seen[0] == ('work', 'started') and seen[-2:] == [
        ('work', 'finished'), ('work_end', None)]


def test_a_remote_wait_waits_for_the_apps_worker(make_entities, remote):
    from tests.test_cli import app_worker
    make_entities(Dummy, 5)
    created = remote.create_snapshot(['Dummy'])
    remote.poll_seconds = 0.05
    with app_worker():
        info = waiting.wait(remote, created['id'], timeout=60)
        started = remote.restore_snapshot(created['id'], dry_run=True)
        plan = waiting.wait(remote, created['id'], 'plan',
                            started['plan']['id'], timeout=60)
    assert info['status'] == 'finished'
    assert (plan['id'], plan['status'], plan['plan']) == (
        started['plan']['id'], 'finished',
        {'Dummy': {'created': 0, 'changed': 0, 'deleted': 0}})


def test_a_status_of_any_shape_from_an_app_is_said_in_one_line():
    """An app may answer a status that is no string: the wait that runs
    out still says so in one line, not with a TypeError."""
    error = waiting.StillWorking(7, 'snapshot', ['storing'], 2)
    assert str(error) == "snapshot 7 still ['storing'] after 2 s"


@pytest.mark.parametrize('which', ['local', 'remote'])
def test_prune_deletes_only_the_ids_it_is_given(make_entities, run_tasks,
                                                remote, which):
    client = LocalClient() if which == 'local' else remote
    make_entities(Dummy, 3)
    ids = [client.create_snapshot(['Dummy'])['id'] for _ in range(3)]
    run_tasks(recursive=True)
    assert client.prune(0, [ids[0], ids[2]]) == {'deleted': [ids[2], ids[0]]}
    run_tasks(recursive=True)
    assert [s['id'] for s in client.list_snapshots()] == [ids[1]]
