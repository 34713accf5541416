"""A restore and its snapshot's deletion: deleting a snapshot deletes its
restores and their markers, even ones that end after it; a snapshot being
restored is not deleted, and no restore starts on one being deleted."""
import pytest
from google.appengine.ext import db

from lovely_gae import async_, completion
from lovely_gae.snapshot import api
from lovely_gae.snapshot.work import deleting, restore
from lovely_gae.snapshot.models import RangeBackup
from lovely_gae.snapshot.restores import Restore
from tests.conftest import Dummy, all_bytes, markers, until_queued


def test_deleting_a_snapshot_deletes_its_restores(
        make_entities, finished_snapshot, run_tasks, monkeypatch, large):
    make_entities(Dummy, 30)
    snap = finished_snapshot(['Dummy'], batchsize=10)
    snap.restore()
    run_tasks(recursive=True)
    monkeypatch.setattr(restore, 'INLINE_BYTES', 0)  # checked by tasks
    snap.restore()
    until_queued(run_tasks, 'restore_ranges')  # checked, then it fails
    [running] = [r for r in Restore.all()
                 if r.to_dict()['status'] == 'running']
    restore.restore_failed('the app stopped it', running.id)
    snap.restore(dry_run=True)  # deleted half way: its markers go too
    [dry_run] = [r for r in Restore.all() if r.dry_run]

    while not markers(dry_run.job('plan')):
        assert run_tasks(max_tasks=1) == 1
    assert api.get_snapshot(snap.id).plan_progress()['status'] == 'running'
    assert Restore.all().count() == 3
    assert completion.Done.all().count() >= 1
    api.get_snapshot(snap.id).delete()
    run_tasks(recursive=True)
    assert Restore.all().count() == 0
    assert completion.Done.all().count() == 0
    assert RangeBackup.all().count() == 0


@pytest.mark.parametrize('dry_run', [False, True])
def test_a_restore_whose_snapshot_went_leaves_nothing_once_purged(
        make_entities, finished_snapshot, run_tasks, task_clock, monkeypatch,
        large, dry_run):
    """The last tasks of a restore (or a dry run) that end at once all end
    it, each with the record as it read it. One ends it, the snapshot is
    deleted (a dry run holds no lock: while it runs, even), and another
    ends it after: its record is back, finished, for a snapshot that went,
    and a copy of a task as late stores its marker. The snapshot's last
    purge, once their leases would have run out, deletes them."""
    make_entities(Dummy, 30)
    snap = finished_snapshot(['Dummy'], batchsize=10)
    phase = 'plan' if dry_run else 'write'
    real, late = restore.ENDS[phase], []

    def two_end(found, counts):
        stale = db.get([entity.key() for entity in found])  # running
        real(found, counts)
        api.get_snapshot(snap.id).delete()
        real(stale, counts)
        late.append(stale[0])
    monkeypatch.setitem(restore.ENDS, phase, two_end)
    snap.restore(dry_run=dry_run)
    run_tasks(recursive=True)
    [back] = Restore.all()
    assert back.status == 'finished'
    completion.mark(late[0].job(phase), 0, {'0:ranges': 2})
    run_tasks(recursive=True, wait=True, clock=task_clock)  # the last purge
    assert Restore.all().count() == 0
    assert completion.Done.all().count() == 0
    assert async_.get_tasks() == []


def test_each_task_that_ends_a_dry_run_makes_one_call(
        make_entities, finished_snapshot, run_tasks, monkeypatch,
        datastore_calls, large):
    """The last tasks of a wave all see the job complete at once, and each
    ends the dry run (``completion``), with the record as it read it: each
    in one put of the same plan. Its markers stay while the record is
    kept, as a restore's writing's do, and go with its snapshot."""
    make_entities(Dummy, 30)
    snap = finished_snapshot(['Dummy'], batchsize=10)
    real, ends = restore.ENDS['plan'], []

    def two_end(found, counts):
        stale = db.get([entity.key() for entity in found])  # running
        for read in (found, stale):
            datastore_calls.clear()
            real(read, counts)
            ends.append(list(datastore_calls))
    monkeypatch.setitem(restore.ENDS, 'plan', two_end)
    snap.restore(dry_run=True)
    run_tasks(recursive=True)
    assert ends == [['Put'], ['Put']]
    [record] = Restore.all()
    assert (record.status, record.plan) == ('finished', {
        'Dummy': {'created': 0, 'changed': 0, 'deleted': 0}})
    assert markers(record.job('plan'))
    api.get_snapshot(snap.id).delete()
    assert completion.Done.all().count() == 0


def test_a_snapshot_being_restored_is_not_deleted_or_pruned(
        make_entities, finished_snapshot, run_tasks):
    from lovely_gae.exceptions import SnapshotInUse
    from webtest import TestApp
    from lovely_gae.snapshot import getApp
    keys = make_entities(Dummy, 30)
    before = all_bytes(['Dummy'])
    snap = finished_snapshot(['Dummy'], batchsize=10)
    db.delete(keys[:25])
    snap.restore()
    assert run_tasks(max_tasks=1) == 1  # a third of it back
    with pytest.raises(SnapshotInUse, match='is being restored'):
        api.get_snapshot(snap.id).delete()
    assert api.prune(keep=0) == []
    res = TestApp(getApp()).post('/lovely.gae/snapshots/%d/delete' % snap.id,
                                 status=409)
    assert 'is being restored' in res.text
    run_tasks(recursive=True)  # the restore ends whole
    assert all_bytes(['Dummy']) == before
    assert api.prune(keep=0) == [snap.id]  # and then it may go


def test_no_restore_starts_once_a_snapshot_is_being_deleted(
        make_entities, finished_snapshot, monkeypatch):
    from lovely_gae.exceptions import SnapshotNotFinished
    make_entities(Dummy, 3)
    snap = finished_snapshot(['Dummy'])
    stale = api.get_snapshot(snap.id)  # read before the delete began
    deleting.mark_deleting(snap.id)
    with pytest.raises(SnapshotNotFinished, match='deleting'):
        stale.restore()
    assert Restore.all().count() == 0


@pytest.mark.parametrize('dry_run', [False, True])
def test_no_restore_starts_if_its_snapshots_delete_began_meanwhile(
        make_entities, finished_snapshot, monkeypatch, dry_run):
    """A restore (or a dry run) reads its snapshot finished, then starts in
    a transaction that reads it again: a delete that began in between
    refuses it. Started, it was not among the restores the delete stopped:
    a dry run ran on, for a snapshot going."""
    from lovely_gae.exceptions import SnapshotNotFinished
    from lovely_gae.snapshot.work import plan
    make_entities(Dummy, 3)
    snap = finished_snapshot(['Dummy'])
    module = plan if dry_run else restore
    real = module.new_record

    def then_deleting(*args, **kwargs):
        record = real(*args, **kwargs)
        deleting.mark_deleting(snap.id)  # and forget() finds no restore
        return record
    monkeypatch.setattr(module, 'new_record', then_deleting)
    with pytest.raises(SnapshotNotFinished, match='deleting'):
        api.get_snapshot(snap.id).restore(dry_run=dry_run)
    assert Restore.all().count() == 0
    assert async_.get_tasks() == []
