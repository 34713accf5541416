"""A restore is whole, single and visible: checked first, one per kind."""
import pytest
from google.appengine.ext import db, ndb

from lovely_gae import async_, completion, entities
from lovely_gae.exceptions import (RangeCorrupted, RestoreRunning,
                                   SnapshotIncomplete)
from lovely_gae.snapshot import api
from lovely_gae.snapshot.work import deleting, restore, waves
from lovely_gae.snapshot.models import RangeBackup
from lovely_gae.snapshot.restores import Restore
from lovely_gae.testing import rerun
from tests.conftest import (Dummy, Yummy, all_bytes, answer_lost, markers,
                            until_queued)


def state(kinds=('Dummy',)):
    """What a refused restore must leave as it was."""
    return (all_bytes(kinds), len(async_.get_tasks()),
            [(r.id, r.status) for r in Restore.all()])


@pytest.fixture
def large(monkeypatch, unsharded):
    """Restores too large to be checked in the call that starts them, their
    tasks as large as allowed (one worker: waves of one task)."""
    monkeypatch.setattr(waves, 'INLINE_RANGES', 1)
    monkeypatch.setattr(waves, 'CHECK_RANGES', 2)
    monkeypatch.setattr(waves, 'WRITE_RANGES', 2)
    monkeypatch.setattr(restore, 'FAN_OUT', 2)


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
            progress['ranges_total'], progress['entities']) == (
        'finished', 3, 3, 30)


@pytest.mark.parametrize('dry_run', [False, True])
def test_progress_is_counted_per_kind(make_entities, finished_snapshot,
                                      run_tasks, dry_run):
    make_entities(Dummy, 30)
    make_entities(Yummy, 10)
    snap = finished_snapshot(['Dummy', 'Yummy'], batchsize=10)
    snap.restore(dry_run=dry_run)
    shown = api.get_snapshot(snap.id)
    progress = shown.plan_progress() if dry_run else shown.restore_progress()
    while progress['ranges_done'] == 0 and progress['status'] != 'finished':
        assert run_tasks(max_tasks=1) == 1
        shown = api.get_snapshot(snap.id)
        progress = (shown.plan_progress() if dry_run
                    else shown.restore_progress())
    assert progress['status'] == 'running'
    by_kind = progress['by_kind']
    assert {kind: counts['ranges_total'] for kind, counts in
            by_kind.items()} == {'Dummy': 3, 'Yummy': 1}
    done = sorted(counts['ranges_done'] for counts in by_kind.values())
    assert progress['ranges_done'] == sum(done) and done[0] == 0
    run_tasks(recursive=True)
    shown = api.get_snapshot(snap.id)
    progress = shown.plan_progress() if dry_run else shown.restore_progress()
    assert progress['by_kind'] == {
        'Dummy': {'ranges_done': 3, 'ranges_total': 3},
        'Yummy': {'ranges_done': 1, 'ranges_total': 1}}


@pytest.mark.parametrize('size', ['small', 'large'])
def test_restore_tasks_run_twice_do_no_harm(make_entities, finished_snapshot,
                                            run_tasks, request, size):
    if size == 'large':
        request.getfixturevalue('large')
    keys = make_entities(Dummy, 30)
    before = all_bytes(['Dummy'])
    snap = finished_snapshot(['Dummy'], batchsize=10)
    db.delete(keys[::2])
    extra = make_entities(Dummy, 3)
    snap.restore()
    tasks = until_queued(run_tasks, 'restore_ranges')
    for task in tasks + tasks:  # each range twice, as a retry would
        rerun(task)
    assert all_bytes(['Dummy']) == before
    assert db.get(extra) == [None] * 3
    progress = api.get_snapshot(snap.id).restore_progress()
    assert progress['status'] == 'finished'
    later = make_entities(Dummy, 2)  # written after the restore ended
    run_tasks(recursive=True)  # the queued tasks now find their ranges done
    assert None not in db.get(later)
    assert Dummy.all().count() == 32


def test_a_large_restore_checks_then_writes_in_tasks(
        make_entities, finished_snapshot, run_tasks, large):
    keys = make_entities(Dummy, 45)
    make_entities(Yummy, 5)
    before = all_bytes(['Dummy', 'Yummy'])
    snap = finished_snapshot(['Dummy', 'Yummy'], batchsize=10)
    db.delete(keys[:20])
    snap.restore()
    assert api.get_snapshot(snap.id).restore_progress()['status'] == (
        'checking')
    ran = run_tasks(recursive=True)
    # Fan-out pages of 2, check tasks of 2 ranges, write tasks of 2 ranges:
    # Dummy has 5 ranges, Yummy 1: 4 checks, 4 writes, 2 fan-outs of the
    # checks and 1 of the writes: the last check queues their first page.
    assert ran == 11
    assert all_bytes(['Dummy', 'Yummy']) == before
    progress = api.get_snapshot(snap.id).restore_progress()
    assert (progress['status'], progress['ranges_done'],
            progress['entities']) == ('finished', 6, 50)


@pytest.mark.parametrize('dry_run', [False, True])
def test_more_tasks_than_start_with_it_are_fanned_out_to_the_end(
        make_entities, finished_snapshot, run_tasks, large, dry_run):
    """A restore (or dry run) of more tasks than commit with its start
    queues them a page at a time, and finishes."""
    make_entities(Dummy, 90)
    snap = finished_snapshot(['Dummy'], batchsize=10)
    before = all_bytes(['Dummy'])
    db.delete(Dummy.all(keys_only=True).fetch(5))
    changed = Dummy.all().fetch(3, offset=20)
    for dummy in changed:
        dummy.title = 'changed'
    db.put(changed + [Dummy(title='new')])
    after = all_bytes(['Dummy'])
    snap.restore(dry_run=dry_run)
    [record] = Restore.all()
    phase = 'plan' if dry_run else 'check'
    assert waves.leaves(record, phase) > waves.INLINE_RANGES
    run_tasks(recursive=True)
    shown = api.get_snapshot(snap.id)
    if dry_run:
        progress = shown.plan_progress()
        assert progress['status'] == 'finished'
        assert progress['plan'] == {
            'Dummy': {'created': 5, 'changed': 3, 'deleted': 1}}
        assert all_bytes(['Dummy']) == after
    else:
        assert shown.restore_progress()['status'] == 'finished'
        assert all_bytes(['Dummy']) == before


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


def test_a_snapshot_names_the_restore_started_on_it(
        make_entities, finished_snapshot, run_tasks):
    """``restore()`` returns None (the seed's doctest shows nothing), and
    leaves on the snapshot it was called on the id of the restore (or dry
    run) it started, which another of another kind may follow at once."""
    make_entities(Dummy, 5)
    make_entities(Yummy, 5)
    snap = finished_snapshot(['Dummy', 'Yummy'])
    mine, theirs = api.get_snapshot(snap.id), api.get_snapshot(snap.id)
    assert mine.restore(kinds=['Dummy']) is None
    theirs.restore(kinds=['Yummy'])
    assert mine.restore(kinds=['Yummy'], dry_run=True) is None
    theirs.restore(kinds=['Dummy'], dry_run=True)
    stored = api.get_snapshot(snap.id)
    assert (stored.restore_id, stored.plan_id) == (theirs.restore_id,
                                                   theirs.plan_id)
    assert mine.restore_progress()['kinds'] == ['Dummy']
    assert mine.plan_progress()['kinds'] == ['Yummy']
    assert len({mine.restore_id, mine.plan_id, theirs.restore_id,
                theirs.plan_id}) == 4
    run_tasks(recursive=True)
    assert mine.restore_progress()['status'] == 'finished'


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


class Note(ndb.Model):
    text = ndb.StringProperty()


def test_ndb_apps_see_what_a_restore_put_back(finished_snapshot, run_tasks):
    kept, changed = Note(text='kept'), Note(text='before')
    ndb.put_multi([kept, changed])
    snap = finished_snapshot(['Note'])
    changed.text = 'after'
    extra = Note(text='extra')
    ndb.put_multi([changed, extra])
    for note in (changed, extra):  # now in ndb's memcache
        assert note.key.get(use_cache=False).text in ('after', 'extra')
    snap.restore()
    run_tasks(recursive=True)
    assert changed.key.get(use_cache=False).text == 'before'
    assert extra.key.get(use_cache=False) is None


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


@pytest.mark.parametrize('namespace', ['', 'tenant'])
def test_each_range_deletes_what_the_snapshot_lacks_within_its_bounds(
        finished_snapshot, run_tasks, namespace, unsharded):
    def key(number):
        return db.Key.from_path('Dummy', 'k%05d' % number,
                                namespace=namespace)

    def put(numbers, title=None):
        db.put([Dummy(key=key(i), title=title or str(i)) for i in numbers])
    put(range(0, 2400, 2))
    before = all_bytes(['Dummy'], namespace)
    snap = finished_snapshot(['Dummy'], namespace=namespace)
    # Not in it: between its keys, before the first and after the last.
    put(list(range(1, 2400, 2)) + list(range(2400, 2600, 2)), 'new')
    db.put(Dummy(key=db.Key.from_path('Dummy', 'a', namespace=namespace)))
    db.delete([key(i) for i in range(0, 200, 2)])
    put(range(1000, 1100, 2), 'changed')
    snap.restore()
    assert run_tasks(recursive=True) == snap.range_count('Dummy') == 6
    assert all_bytes(['Dummy'], namespace) == before
    progress = api.get_snapshot(snap.id).restore_progress()
    assert (progress['status'], progress['deleted']) == ('finished', 1301)


@pytest.mark.parametrize('dry_run', [False, True])
def test_a_scan_for_stale_entities_goes_on_where_it_stopped(
        finished_snapshot, run_tasks, unsharded, monkeypatch, dry_run):
    """A range may hold any number of entities its snapshot lacks (the
    last range of a kind holds every one added since with larger keys):
    no task reads more than ``STALE_SCAN`` keys of a range; tasks of their
    own go on from where the scan stopped, and the restore is exact (its
    dry run counts them all)."""
    from lovely_gae.snapshot.work import putback
    monkeypatch.setattr(putback, 'STALE_SCAN', 100)
    scans, real = [], putback.delete_stale

    def delete_stale(backups, namespace, stops=None, counting=False):
        if stops is not None:  # a task that goes on
            scans.append(len(stops))
        return real(backups, namespace, stops, counting)
    monkeypatch.setattr(putback, 'delete_stale', delete_stale)

    def put(numbers, title=None):
        db.put([Dummy(key=db.Key.from_path('Dummy', 'k%05d' % i),
                      title=title or str(i)) for i in numbers])
    put(range(0, 600, 2))
    before = all_bytes(['Dummy'])
    snap = finished_snapshot(['Dummy'])
    put(list(range(1, 600, 2)) + list(range(600, 1600)), 'new')
    after = all_bytes(['Dummy'])
    snap.restore(dry_run=dry_run)
    ranges = snap.range_count('Dummy')
    assert run_tasks(recursive=True) == ranges + len(scans)
    assert len(scans) >= 1600 // 100 - ranges  # each read 100 keys at most
    if dry_run:
        plan = api.get_snapshot(snap.id).plan_progress()['plan']
        assert plan['Dummy']['deleted'] == 1300
        assert all_bytes(['Dummy']) == after
        return
    assert all_bytes(['Dummy']) == before
    progress = api.get_snapshot(snap.id).restore_progress()
    assert (progress['status'], progress['deleted']) == ('finished', 1300)


@pytest.mark.parametrize('over_http', [False, True])
def test_ndb_apps_see_what_an_upload_put(gae_testbed, tmp_path, over_http):
    from webtest import TestApp
    from lovely_gae.snapshot import client, getApp
    from lovely_gae.snapshot.transfer import devfile, wire
    note = Note(text='before')
    note.put()
    record = entities.get([note.key.reference()])[0]
    record.property[0].value.stringValue = b'uploaded'
    path = str(tmp_path / 'file')
    with open(path, 'wb') as fileobj:
        writer = devfile.DevFileWriter(fileobj)
        writer.add_many([record.SerializeToString()])
        writer.close()
    # A later request has a context cache of its own: memcache counts.
    assert note.key.get(use_cache=False).text == 'before'  # now cached
    if over_http:
        [(body, _)] = wire.batches([record.SerializeToString()])
        TestApp(getApp()).post('/lovely.gae/upload', body,
                               content_type=wire.CONTENT_TYPE)
    else:
        client.upload_snapshot(path)
    assert note.key.get(use_cache=False).text == 'uploaded'


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
