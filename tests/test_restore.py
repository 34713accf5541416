"""A restore counts its ranges apart from the snapshot, exactly once."""
import pytest
from google.appengine.ext import db

from lovely_gae import async_, defaults, entities
from lovely_gae.snapshot import api, restore
from lovely_gae.snapshot.restore import RestoreProgress
from tests.conftest import Dummy, all_bytes


def _restore_tasks():
    return [task for task in async_.get_tasks()
            if task.func.endswith(':restore_range')]


def test_progress_counts_ranges_while_a_restore_runs(make_entities,
                                                     finished_snapshot,
                                                     run_tasks):
    make_entities(Dummy, 30)
    snap = finished_snapshot(['Dummy'], batchsize=10)
    snap.restore()
    assert run_tasks(max_tasks=1) == 1
    progress = api.get_snapshot(snap.id).restore_progress()
    assert (progress['status'], progress['ranges_done'],
            progress['ranges_total']) == ('running', 1, 3)
    assert run_tasks(recursive=True) == 2
    progress = api.get_snapshot(snap.id).restore_progress()
    assert (progress['status'], progress['ranges_done'],
            progress['ranges_total']) == ('finished', 3, 3)


def test_restore_tasks_run_twice_do_no_harm(make_entities, finished_snapshot,
                                            run_tasks):
    keys = make_entities(Dummy, 30)
    before = all_bytes(['Dummy'])
    snap = finished_snapshot(['Dummy'], batchsize=10)
    db.delete(keys[::2])
    snap.restore()
    tasks = _restore_tasks()
    assert len(tasks) == 3
    for task in tasks + tasks:  # each range twice, as a retry would
        args, kwargs = task.arguments()
        restore.restore_range(*args, **kwargs)
    assert all_bytes(['Dummy']) == before
    assert api.get_snapshot(snap.id).restore_progress()['status'] == \
        'finished'
    later = make_entities(Dummy, 2)  # written after the restore ended
    run_tasks(recursive=True)  # the queued tasks now find their ranges done
    assert None not in db.get(later)
    assert Dummy.all().count() == 32


def test_a_newer_restore_stops_the_tasks_of_an_earlier_one(
        make_entities, finished_snapshot, run_tasks):
    keys = make_entities(Dummy, 30)
    before = all_bytes(['Dummy'])
    snap = finished_snapshot(['Dummy'], batchsize=10)
    snap.restore()
    earlier = _restore_tasks()
    snap.restore()
    db.delete(keys)
    for task in earlier:
        args, kwargs = task.arguments()
        restore.restore_range(*args, **kwargs)
    assert Dummy.all().count() == 0  # the earlier restore put nothing back
    run_tasks(recursive=True)
    assert all_bytes(['Dummy']) == before
    assert api.get_snapshot(snap.id).restore_progress()['ranges_done'] == 3


def test_a_restore_begun_by_a_version_counting_on_the_snapshot_finishes(
        make_entities, finished_snapshot, run_tasks):
    keys = make_entities(Dummy, 30)
    before = all_bytes(['Dummy'])
    snap = finished_snapshot(['Dummy'], batchsize=10)
    db.delete(keys)
    snap.restore()
    run_tasks(max_tasks=1)
    progress = db.get(RestoreProgress.key_of(snap.id))
    older = api.get_snapshot(snap.id)  # as that version left it
    older.restore_done = progress.done
    older.put()
    db.delete(progress)
    assert older.restore_progress()['ranges_done'] == 1
    assert run_tasks(recursive=True) == 2
    assert all_bytes(['Dummy']) == before
    progress = api.get_snapshot(snap.id).restore_progress()
    assert (progress['status'], progress['ranges_done']) == ('finished', 3)


def test_a_range_that_keeps_failing_puts_the_restore_in_error(
        make_entities, finished_snapshot, fast_retries, monkeypatch,
        run_tasks):
    keys = make_entities(Dummy, 30)
    snap = finished_snapshot(['Dummy'], batchsize=10)
    monkeypatch.setattr('lovely_gae.defaults.MAX_ATTEMPTS', 2)
    db.delete(keys)
    put_encoded = entities.put_encoded

    last_range = sorted(keys)[20]  # in key order: ids need not ascend

    def put_but_the_last(records):
        if entities.EntityProto.FromString(records[0]).key.path.element[
                -1].id == last_range.id():
            raise RuntimeError('disk on fire')
        put_encoded(records)
    monkeypatch.setattr(entities, 'put_encoded', put_but_the_last)
    snap.restore()
    run_tasks(recursive=True, wait=True, deadline=30)
    progress = api.get_snapshot(snap.id).restore_progress()
    assert progress['status'] == 'error'
    assert 'restore_range failed after 2 attempts' in progress['error']
    assert 'RuntimeError: disk on fire' in progress['error']
    assert (progress['ranges_done'], progress['ranges_total']) == (2, 3)
    assert Dummy.all().count() == 20


def test_deleting_a_snapshot_deletes_its_restore_progress(
        make_entities, finished_snapshot, run_tasks):
    make_entities(Dummy, 3)
    snap = finished_snapshot(['Dummy'])
    snap.restore()
    run_tasks(recursive=True)
    assert RestoreProgress.all().count() == 1
    api.get_snapshot(snap.id).delete()
    assert RestoreProgress.all().count() == 0


def _interleaved(monkeypatch, finished_snapshot, namespace):
    """A snapshot of 1200 entities; then 1300 not in it put among them,
    100 of it deleted, 50 changed; and a scan that hands over every 500
    keys. Returns ``(snapshot, bytes it holds, keys now stored)``."""
    def key(number):
        return db.Key.from_path('Dummy', 'k%05d' % number,
                                namespace=namespace)

    def put(numbers, title=None):
        db.put([Dummy(key=key(i), title=title or str(i)) for i in numbers])
    put(range(0, 2400, 2))
    before = all_bytes(['Dummy'], namespace)
    snap = finished_snapshot(['Dummy'], namespace=namespace)
    put(list(range(1, 2400, 2)) + list(range(2400, 2600, 2)), 'new')
    db.delete([key(i) for i in range(0, 200, 2)])
    put(range(1000, 1100, 2), 'changed')
    monkeypatch.setattr(defaults, 'PASS_SECONDS', 0.0)
    stored = sum(1 for _ in entities.iter_range_keys('Dummy', namespace))
    return snap, before, stored


@pytest.mark.parametrize('namespace', ['', 'tenant'])
def test_the_scan_for_stale_entities_goes_on_in_tasks_of_its_own(
        monkeypatch, finished_snapshot, run_tasks, namespace):
    snap, before, stored = _interleaved(monkeypatch, finished_snapshot,
                                        namespace)
    assert stored == 2400
    snap.restore()
    ranges = snap.range_count('Dummy')
    # The scan looks at 500 keys a task: 4 more tasks go on after the first.
    assert run_tasks(recursive=True) == ranges + stored // restore._SCAN_CHECK
    assert all_bytes(['Dummy'], namespace) == before
    progress = api.get_snapshot(snap.id).restore_progress()
    assert (progress['status'], progress['ranges_done']) == (
        'finished', ranges)


def test_a_task_that_goes_on_with_the_scan_run_twice_does_no_harm(
        monkeypatch, finished_snapshot, run_tasks):
    snap, before, _ = _interleaved(monkeypatch, finished_snapshot, '')
    snap.restore()
    going_on = []
    while not going_on:
        assert run_tasks(max_tasks=1) == 1
        going_on = [task for task in _restore_tasks()
                    if task.arguments()[1].get('after') is not None]
    args, kwargs = going_on[0].arguments()
    restore.restore_range(*args, **kwargs)  # ran, then its worker died
    run_tasks(recursive=True)  # its retry, and the rest
    assert all_bytes(['Dummy']) == before
    assert api.get_snapshot(snap.id).restore_progress()['status'] == (
        'finished')
