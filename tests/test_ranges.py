"""A snapshot's range tasks hold up: tasks that run twice or race, shards,
no entity that every task writes, and deleting a snapshot."""
import collections
import os

import pytest
from google.appengine.api import datastore
from google.appengine.ext import db

from lovely_gae import async_, completion, defaults
from lovely_gae.snapshot import api
from lovely_gae.snapshot.work import ranges
from lovely_gae.snapshot.markers import SnapshotMarkers
from lovely_gae.snapshot.models import (SHARD_STRIDE, RangeBackup,
                                        RangeBackupPart, Snapshot)
from lovely_gae.testing import rerun
from tests.conftest import (Dummy, Yummy, all_bytes, answer_lost, queued,
                            until_queued)


class Heavy(db.Model):
    payload = db.BlobProperty()


def test_a_range_task_run_twice_stores_the_range_once(make_entities,
                                                      run_tasks):
    make_entities(Dummy, 30)
    snap = api.create_snapshot(['Dummy'], batchsize=10)
    tasks = until_queued(run_tasks, 'store_ranges')
    assert len(tasks) == 3
    for task in tasks:
        rerun(task)
    make_entities(Dummy, 3)  # a second run would now store other bytes
    for task in tasks:  # each range again, as a retry would
        rerun(task)
    run_tasks(recursive=True)
    snap = api.get_snapshot(snap.id)
    assert snap.status == snap.STATUS_FINISHED
    assert snap.rangebackup_set.count() == 3
    assert snap.progress()['entities'] == 30
    assert RangeBackupPart.all().count() == 0


def test_a_losing_racer_leaves_no_parts_behind(gae_testbed, run_tasks,
                                               monkeypatch):
    monkeypatch.setattr(defaults, 'PART_SIZE', 64 * 1024)
    db.put([Heavy(payload=os.urandom(10 * 1000)) for _ in range(30)])
    snap = api.create_snapshot(['Heavy'])
    [task] = until_queued(run_tasks, 'store_ranges')
    write = ranges.write
    racers = []

    def the_other_commits_first(*args):
        if not racers:  # a second worker runs the whole task meanwhile
            racers.append(True)
            rerun(task)
        return write(*args)
    monkeypatch.setattr(ranges, 'write', the_other_commits_first)
    rerun(task)
    monkeypatch.undo()
    [backup] = RangeBackup.all()
    assert backup.parts >= 4
    assert RangeBackupPart.all().count() == backup.parts - 1  # the winner's
    assert len(b"".join(backup.iter_parts())) == backup.size  # all there
    assert api.get_snapshot(snap.id).status == 'finished'
    assert api.get_snapshot(snap.id).progress()['entities'] == 30


def test_a_retried_callback_queues_its_ranges_once(make_entities, run_tasks):
    make_entities(Dummy, 25)
    snap = api.create_snapshot(['Dummy'], batchsize=10)
    run_tasks()
    [callback] = async_.get_tasks()
    rerun(callback)  # as if it ran, then crashed
    rerun(callback)  # and its retry
    assert len(async_.get_tasks()) == 1 + 3
    assert run_tasks(recursive=True) == 4  # the callback once more, 3 ranges
    assert api.get_snapshot(snap.id).rangebackup_set.count() == 3


def test_a_large_kind_is_cut_into_shards_passed_over_at_once(
        make_entities, finished_snapshot, run_tasks, sharded):
    keys = make_entities(Dummy, 200)
    make_entities(Yummy, 25)  # a small kind beside it
    before = all_bytes(['Dummy', 'Yummy'])
    snap = api.create_snapshot(['Dummy', 'Yummy'], batchsize=10)
    assert len(queued('store_shard')) == 4  # cut as it was created, each
    run_tasks(recursive=True)  # shard stored on its own, all queued with it
    snap = api.get_snapshot(snap.id)
    assert snap.status == 'finished'
    counts = snap.range_counts['Dummy']
    assert len(counts) == 4 and sum(counts) >= 20
    assert [b.position for b in snap.range_backups('Dummy')] == [
        shard * SHARD_STRIDE + index
        for shard, count in enumerate(counts) for index in range(count)]
    assert snap.range_counts['Yummy'] == [3]
    assert snap.kind_entities == {'Dummy': 200, 'Yummy': 25}
    assert snap.entity_count == 225
    starts = [b.start for b in snap.range_backups('Dummy')]
    assert starts[0] is None and snap.markers['Dummy'] == starts[1:]
    db.delete(keys[::3])
    snap.restore()
    run_tasks(recursive=True)
    assert all_bytes(['Dummy', 'Yummy']) == before


def test_a_shard_task_goes_on_in_tasks_of_its_own(
        make_entities, run_tasks, sharded, monkeypatch, ticking_clock):
    make_entities(Dummy, 300)
    before = all_bytes(['Dummy'])
    monkeypatch.setattr(ranges, 'PER_TASK', 2)
    monkeypatch.setattr(defaults, 'PASS_SECONDS', 0.5)  # a commit a task
    snap = api.create_snapshot(['Dummy'], batchsize=5)
    # 60 ranges, 2 a commit: 30 tasks, not the kind's and its 3 shards'.
    assert run_tasks(recursive=True) >= 30
    snap = api.get_snapshot(snap.id)
    assert snap.status == 'finished'
    assert snap.entity_count == 300
    db.delete(list(Dummy.all(keys_only=True)))
    snap.restore()
    run_tasks(recursive=True)
    assert all_bytes(['Dummy']) == before


def test_no_entity_is_written_by_every_range_task(make_entities, run_tasks,
                                                  sharded, monkeypatch):
    make_entities(Dummy, 400)
    writes = collections.Counter()
    put = db.put

    def counting(models, *args, **kwargs):
        for model in models if isinstance(models, list) else [models]:
            writes[model.key().name() or model.key().id()] += 1
        return put(models, *args, **kwargs)
    monkeypatch.setattr(db, 'put', counting)
    snap = api.create_snapshot(['Dummy'], batchsize=5)
    run_tasks(recursive=True)
    snap = api.get_snapshot(snap.id)
    assert (snap.status, snap.entity_count) == ('finished', 400)
    assert RangeBackup.all().count() >= 80  # shards end in short ranges
    # The snapshot: at its start, storing, finished; no marker but once.
    assert writes[snap.id] <= 3
    assert max(writes.values()) <= 3


def test_a_snapshot_of_more_kinds_than_a_transaction_holds(gae_testbed,
                                                           run_tasks):
    for number in range(30):
        datastore.Put(datastore.Entity('Kind%02d' % number, id=1))
    snap = api.create_snapshot()
    run_tasks(recursive=True)
    snap = api.get_snapshot(snap.id)
    assert (snap.status, snap.entity_count, len(snap.kinds)) == (
        'finished', 30, 30)


def test_deleting_a_snapshot_leaves_nothing_of_it(make_entities, run_tasks,
                                                  sharded):
    make_entities(Dummy, 100)
    snap = api.create_snapshot(['Dummy'], batchsize=5)
    run_tasks(recursive=True)
    assert SnapshotMarkers.all().count() > 0
    api.get_snapshot(snap.id).delete()
    run_tasks(recursive=True)
    for model in (RangeBackup, RangeBackupPart, SnapshotMarkers,
                  completion.Done):
        assert model.all().count() == 0


def test_what_tasks_of_a_snapshot_deleted_while_storing_write_goes_too(
        make_entities, run_tasks, monkeypatch):
    """The last range task reads its snapshot once it has committed; the
    delete comes after, its purge before the task counts its shard done:
    the last purge, a lease later, finds what the task wrote since. (A
    task that reads it gone purges after itself: see below.)"""
    make_entities(Dummy, 30)
    snap = api.create_snapshot(['Dummy'], batchsize=10)
    tasks = until_queued(run_tasks, 'store_ranges')
    monkeypatch.setattr(defaults, 'LEASE_SECONDS', 0.0)  # run out at once
    for task in tasks[:-1]:
        rerun(task)
    real = ranges.gone

    def deleted_meanwhile(read):
        api.get_snapshot(snap.id).delete()
        return real(read)  # as read before
    monkeypatch.setattr(ranges, 'gone', deleted_meanwhile)
    rerun(tasks[-1])
    monkeypatch.setattr(ranges, 'gone', real)
    assert RangeBackup.all().count() == 0  # the delete's purge
    assert completion.Done.all().count() > 0  # the task wrote on
    # The last purge, and the queued copies of the tasks, late.
    run_tasks(recursive=True, wait=True, deadline=10)
    for model in (RangeBackup, RangeBackupPart, completion.Done):
        assert model.all().count() == 0


class _Died(BaseException):
    """The process ends here: nothing after runs, no retry is stored."""


def test_a_pushed_range_task_that_dies_after_its_commit_is_run_again(
        make_entities, run_tasks, monkeypatch):
    """A pushed task (``async_.run_task``) runs at least once: its entity
    goes once it has returned. A range task whose commit deleted it (a
    call less) and that died before it ascended would leave its part
    counted by no one: the snapshot ``storing`` for ever."""
    make_entities(Dummy, 10)
    snap = api.create_snapshot(['Dummy'], batchsize=10)
    [task] = until_queued(run_tasks, 'store_ranges')
    real, died = completion.ascend, []

    def ascend(*args, **kwargs):
        if not died:
            died.append(True)
            raise _Died()
        return real(*args, **kwargs)
    monkeypatch.setattr(completion, 'ascend', ascend)
    with pytest.raises(_Died):
        async_.run_task(task.name)
    assert RangeBackup.all().count() == 1  # committed, then died
    run_tasks(recursive=True, wait=True)
    assert api.get_snapshot(snap.id).status == 'finished'
    assert api.get_snapshot(snap.id).entity_count == 10


def test_a_commit_that_landed_though_it_timed_out_keeps_its_parts(
        gae_testbed, run_tasks, monkeypatch):
    """A commit that timed out may have been applied all the same, and
    ``transaction`` tries it again: the retry finds the part's marker, its
    own. Were the parts it wrote deleted as another run's, the snapshot
    would say finished over a range whose parts are gone."""
    monkeypatch.setattr(defaults, 'PART_SIZE', 64 * 1024)
    db.put([Heavy(payload=os.urandom(10 * 1000)) for _ in range(30)])
    snap = api.create_snapshot(['Heavy'])
    lost = answer_lost(monkeypatch, completion, 'marker')  # a range's commit
    run_tasks(recursive=True)
    monkeypatch.undo()
    assert lost
    [backup] = RangeBackup.all()
    assert backup.parts >= 4
    assert RangeBackupPart.all().count() == backup.parts - 1
    assert len(b"".join(backup.iter_parts())) == backup.size  # all there
    assert api.get_snapshot(snap.id).status == 'finished'


def _nothing_of_snapshots_left():
    for model in (RangeBackup, RangeBackupPart, SnapshotMarkers,
                  completion.Done):
        assert model.all().count() == 0, model


@pytest.mark.parametrize('ended', [True, False])
def test_a_range_task_that_comes_after_the_last_purge_leaves_nothing(
        gae_testbed, run_tasks, monkeypatch, ended):
    """Tasks run at least once, and a retry may come later than a deleted
    snapshot's last purge (a finished one has none after its delete; one
    deleted while storing, a lease later: ``ranges.LAST_PURGE_SECONDS``).
    Its commit finds no marker (purged): it would store a range of a
    snapshot that is gone, its parts and its marker, for ever. It reads
    the snapshot once it has committed, finds it gone, and purges it
    again."""
    monkeypatch.setattr(defaults, 'PART_SIZE', 64 * 1024)
    db.put([Heavy(payload=os.urandom(10 * 1000)) for _ in range(30)])
    snap = api.create_snapshot(['Heavy'])
    [task] = until_queued(run_tasks, 'store_ranges')
    if ended:
        run_tasks(recursive=True)
        assert api.get_snapshot(snap.id).status == 'finished'
    monkeypatch.setattr(ranges, 'LAST_PURGE_SECONDS', 0)  # at once
    api.get_snapshot(snap.id).delete()
    run_tasks(recursive=True, wait=True, deadline=10)  # the last purge
    _nothing_of_snapshots_left()
    assert async_.get_tasks() == []
    rerun(task)  # the late retry
    _nothing_of_snapshots_left()
    assert async_.get_tasks() == []


class _Answered:
    """An async get answered as production answers it: at once, not when
    its result is first looked at (the stub runs it only then)."""

    def __init__(self, real, key, **kwargs):
        self.result = real(key, **kwargs).get_result()

    def get_result(self):
        return self.result


@pytest.mark.parametrize('meanwhile', ['deleted', 'restored'])
def test_a_late_copy_of_the_last_task_keeps_what_came_since(
        make_entities, run_tasks, monkeypatch, sharded, meanwhile):
    """The task that counts a snapshot's last shard finishes it. A copy
    of it (tasks run at least once) that stalls once it found its kind
    counted, while the other finishes the snapshot, must not store the
    snapshot as it was: not bring back a snapshot deleted meanwhile,
    ``finished`` with its ranges purged, nor drop the restore begun
    meanwhile."""
    make_entities(Dummy, 400)
    snap = api.create_snapshot(['Dummy'], batchsize=10)
    while len(async_.get_tasks()) > 1:  # all but the last shard's task
        assert run_tasks(max_tasks=1) == 1
    [last] = async_.get_tasks()
    real_ascend, real_get = completion.ascend, db.get_async
    stalled = []

    def ascend(job, index, total=None, fanout=completion.FANOUT):
        counted = real_ascend(job, index, total, fanout)
        if job == ranges.job(snap.id, 0) and not stalled:
            stalled.append(True)  # the queued copy runs to the end meanwhile
            run_tasks(recursive=True)
            assert api.get_snapshot(snap.id).status == 'finished'
            if meanwhile == 'deleted':
                api.get_snapshot(snap.id).delete()
                run_tasks(recursive=True, wait=True, deadline=10)
                assert Snapshot.get_by_id(snap.id) is None
            else:
                api.get_snapshot(snap.id).restore()
        return counted
    monkeypatch.setattr(completion, 'ascend', ascend)
    monkeypatch.setattr(db, 'get_async',
                        lambda key, **kw: _Answered(real_get, key, **kw))
    monkeypatch.setattr(defaults, 'LEASE_SECONDS', 0.0)  # last purge at once
    rerun(last)
    monkeypatch.undo()
    assert stalled
    stored = Snapshot.get_by_id(snap.id)
    if meanwhile == 'deleted':
        assert stored is None, 'a deleted snapshot came back %s' % (
            stored.status)
        assert RangeBackup.all().count() == 0
    else:
        assert stored.restore_progress() is not None, (
            'the restore begun meanwhile is gone from its snapshot')
