"""What a restore refuses and how it locks: a damaged snapshot is refused
before anything is written, a range that keeps failing ends it in error,
one restore of a kind at a time, and a start is whole or nothing, even one
tried again after its commit timed out."""
import pytest
from google.appengine.ext import db

from lovely_gae import async_, entities
from lovely_gae.exceptions import (RangeCorrupted, RestoreRunning,
                                   SnapshotIncomplete)
from lovely_gae.snapshot import api
from lovely_gae.snapshot.work import waves
from lovely_gae.snapshot.restores import Restore
from tests.conftest import Dummy, Yummy, all_bytes, answer_lost


def state(kinds=('Dummy',)):
    """What a refused restore must leave as it was."""
    return (all_bytes(kinds), len(async_.get_tasks()),
            [(r.id, r.status) for r in Restore.all()])


def _corrupt(snap, kind='Dummy', position=1):
    backup = [rb for rb in snap.range_backups(kind)
              if rb.position == position][0]
    data = bytearray(backup.data)
    data[len(data) // 2] ^= 1
    backup.data = bytes(data)
    backup.put()


def _drop(snap, kind='Dummy', position=1):
    db.delete([rb for rb in snap.range_backups(kind)
               if rb.position == position][0])


@pytest.mark.parametrize('damage, error, message', [
    (_corrupt, RangeCorrupted, 'range RB:%d:Dummy:0000000001:'),
    (_drop, SnapshotIncomplete, "snapshot %d is incomplete: kind 'Dummy' "
     "lacks 1 of its 3 ranges (positions 1)")])
def test_a_damaged_snapshot_is_refused_before_anything_is_written(
        make_entities, finished_snapshot, run_tasks, damage, error, message):
    keys = make_entities(Dummy, 30)
    snap = finished_snapshot(['Dummy'], batchsize=10)
    db.delete(keys[:25])
    damage(snap)
    before = state()
    with pytest.raises(error) as raised:
        snap.restore()
    assert str(raised.value).startswith(message % snap.id)
    assert state() == before
    assert api.get_snapshot(snap.id).restore_progress() is None
    snap.restore(dry_run=True)  # a dry run says so too
    run_tasks(recursive=True)
    dry_run = api.get_snapshot(snap.id).plan_progress()
    assert (dry_run['status'], dry_run['plan']) == ('error', None)
    assert dry_run['error'].split(':')[0] == str(raised.value).split(':')[0]
    assert 'Dummy' in dry_run['error'] and '1' in dry_run['error']


@pytest.mark.parametrize('damage, message', [
    (_corrupt, 'range RB:%d:Dummy:0000000003:'),
    (_drop, 'snapshot %d is incomplete: kind \'Dummy\' lacks 1 of its '
     'ranges 2 to 3 (positions 3)')])  # as the check of ranges 2 and 3 saw
def test_a_damaged_large_snapshot_ends_in_error_with_nothing_written(
        make_entities, finished_snapshot, run_tasks, large, damage, message):
    keys = make_entities(Dummy, 50)
    snap = finished_snapshot(['Dummy'], batchsize=10)
    db.delete(keys[:25])
    damage(snap, position=3)
    before = all_bytes(['Dummy'])
    snap.restore()
    run_tasks(recursive=True)
    progress = api.get_snapshot(snap.id).restore_progress()
    assert progress['status'] == 'error'
    assert progress['error'].startswith(message % snap.id)
    assert all_bytes(['Dummy']) == before  # not one range put back
    assert async_.get_tasks() == []  # nothing left running either
    snap.restore(kinds=['Dummy'])  # the kind is free again


def test_a_range_that_keeps_failing_puts_the_restore_in_error(
        make_entities, finished_snapshot, fast_retries, monkeypatch,
        run_tasks):
    keys = make_entities(Dummy, 30)
    snap = finished_snapshot(['Dummy'], batchsize=10)
    monkeypatch.setattr('lovely_gae.defaults.MAX_ATTEMPTS', 2)
    db.delete(keys)
    send_put = entities.SentPut

    last_range = sorted(keys)[20]  # in key order: ids need not ascend

    def put_but_the_last(records):
        if entities.EntityProto.FromString(records[0]).key.path.element[
                -1].id == last_range.id():
            raise RuntimeError('disk on fire')
        return send_put(records)
    monkeypatch.setattr(entities, 'SentPut', put_but_the_last)
    snap.restore()
    run_tasks(recursive=True, wait=True, deadline=30)
    progress = api.get_snapshot(snap.id).restore_progress()
    assert progress['status'] == 'error'
    assert 'restore_ranges failed after 2 attempts' in progress['error']
    assert 'RuntimeError: disk on fire' in progress['error']
    assert (progress['ranges_done'], progress['ranges_total']) == (2, 3)
    assert Dummy.all().count() == 20
    monkeypatch.setattr(entities, 'SentPut', send_put)
    snap.restore()  # the failed restore let go of its kind
    run_tasks(recursive=True)
    assert Dummy.all().count() == 30


def test_one_restore_of_a_kind_at_a_time(make_entities, finished_snapshot,
                                         run_tasks):
    make_entities(Dummy, 5)
    make_entities(Yummy, 5)
    first = finished_snapshot(['Dummy', 'Yummy'])
    second = finished_snapshot(['Dummy'])
    first.restore(kinds=['Dummy'])
    running = api.get_snapshot(first.id).restore_id
    before = state(('Dummy', 'Yummy'))
    with pytest.raises(RestoreRunning) as raised:
        second.restore()
    assert str(raised.value) == (
        "kind 'Dummy' of namespace '' is being restored from snapshot %d "
        "(restore %s); wait until it has ended" % (first.id, running))
    with pytest.raises(RestoreRunning):
        first.restore()
    assert state(('Dummy', 'Yummy')) == before
    assert api.get_snapshot(second.id).restore_progress() is None
    first.restore(kinds=['Yummy'])  # another kind may go meanwhile
    run_tasks(recursive=True)
    second.restore()  # and the kind again once the first has ended
    run_tasks(recursive=True)
    assert api.get_snapshot(second.id).restore_progress()['status'] == (
        'finished')


def test_a_restore_starts_with_its_tasks_or_not_at_all(
        make_entities, finished_snapshot, monkeypatch):
    make_entities(Dummy, 5)
    snap = finished_snapshot(['Dummy'])

    def broken(tasks):
        raise RuntimeError('queue unavailable')
    monkeypatch.setattr(async_, 'defer_many', broken)
    with pytest.raises(RuntimeError):
        snap.restore()
    monkeypatch.undo()
    assert api.get_snapshot(snap.id).restore_progress() is None
    assert Restore.all().count() == 0
    snap.restore()  # no lock was left behind


def test_a_start_that_landed_though_it_timed_out_is_not_refused(
        make_entities, finished_snapshot, run_tasks, monkeypatch):
    """A commit that timed out may have been applied all the same, and
    ``transaction`` tries it again: the retry finds the kinds locked, by
    this very restore. Refused (``RestoreRunning`` naming itself), the
    caller would be told no restore started while it runs."""
    from lovely_gae.snapshot.work import locks
    make_entities(Dummy, 5)
    snap = finished_snapshot(['Dummy'])
    lost = answer_lost(monkeypatch, locks, 'take')  # the start's commit
    snap.restore()
    monkeypatch.undo()
    assert lost
    run_tasks(recursive=True)
    [record] = Restore.all()
    assert record.status == 'finished'
    assert locks.held().count() == 0


@pytest.mark.parametrize('size', ['small', 'large'])
def test_a_start_tried_again_after_its_restore_ran_leaves_it_ended(
        make_entities, finished_snapshot, run_tasks, monkeypatch, size):
    """A start whose commit timed out though it landed is tried again
    after its tasks may have run (App Engine pushes them with the commit):
    the restore may have finished, its kinds freed. Stored again, it went
    back to ``running`` (or ``checking``), its kinds locked and its tasks
    queued again, till they ran once more (a large one checked every range
    again)."""
    from lovely_gae.snapshot.work import locks
    if size == 'large':
        monkeypatch.setattr(waves, 'INLINE_RANGES', 1)
    make_entities(Dummy, 30)
    snap = finished_snapshot(['Dummy'], batchsize=10)
    # The start's commit, its tasks run to the end before the retry.
    lost = answer_lost(monkeypatch, locks, 'take',
                       lambda: run_tasks(recursive=True))
    snap.restore()
    monkeypatch.undo()
    assert lost
    [record] = Restore.all()
    assert record.status == 'finished'
    assert locks.held().count() == 0
    assert async_.get_tasks() == []


def test_a_dry_run_started_again_after_it_ran_leaves_its_plan(
        make_entities, finished_snapshot, run_tasks, monkeypatch):
    """As a restore's: a dry run's start that landed though it timed out,
    tried again after its tasks ran to the end. Stored again, the record
    went back to ``running``, its markers gone: every range counted again."""
    from lovely_gae.snapshot.work import plan
    make_entities(Dummy, 30)
    snap = finished_snapshot(['Dummy'], batchsize=10)
    lost = answer_lost(monkeypatch, plan, 'begin',
                       lambda: run_tasks(recursive=True))
    snap.restore(dry_run=True)
    monkeypatch.undo()
    assert lost
    [record] = Restore.all()
    assert record.status == 'finished'
    assert async_.get_tasks() == []
