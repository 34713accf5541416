"""A large restore's tasks come in whole waves of the queue's concurrency."""
import pytest
from google.appengine.ext import db

from lovely_gae import async_, defaults, push
from lovely_gae.snapshot import api
from lovely_gae.snapshot.work import restore, waves
from tests.conftest import Dummy, all_bytes, markers, queued, until_queued


def _sizes(name):
    """``(ranges, ...)`` of the queued tasks named ``name``, by index."""
    found = sorted(task.arguments()[0][3:] for task in queued(name))
    return [count for _, _, _, count in found]


def _assert_finished(snap):
    """``snap``'s restore has finished, as stored now."""
    assert api.get_snapshot(snap.id).restore_progress()[
        'status'] == 'finished'


@pytest.fixture
def nine_ranges(make_entities, finished_snapshot, monkeypatch, unsharded):
    """A snapshot of 9 ranges, too many to restore in the starting call."""
    make_entities(Dummy, 90)
    snap = finished_snapshot(['Dummy'], batchsize=10)
    monkeypatch.setattr(waves, 'INLINE_RANGES', 1)
    return snap


@pytest.mark.parametrize('workers, most, tasks', [
    (2, 8, [5, 4]),           # one wave of two tasks
    (1, 4, [3, 3, 3]),        # three waves of one: even, not 4, 4 and 1
    (4, 2, [2, 2, 2, 2, 1]),  # two waves of four at most
    (16, 8, [1] * 9)])        # more workers than ranges: a range a task
def test_writing_tasks_share_the_ranges_out_in_whole_waves(
        nine_ranges, run_tasks, monkeypatch, workers, most, tasks):
    monkeypatch.setattr(defaults, 'SHARDS', workers)
    monkeypatch.setattr(waves, 'WRITE_RANGES', most)
    before = all_bytes(['Dummy'])
    nine_ranges.restore()
    until_queued(run_tasks, 'restore_ranges')
    assert _sizes('restore_ranges') == tasks
    run_tasks(recursive=True)
    assert all_bytes(['Dummy']) == before
    _assert_finished(nine_ranges)


def test_checks_commit_with_the_start_spread_over_as_many_as_may(
        nine_ranges, monkeypatch):
    monkeypatch.setattr(waves, 'INLINE_RANGES', 3)  # tasks in its commit
    monkeypatch.setattr(defaults, 'SHARDS', 8)
    nine_ranges.restore()
    assert _sizes('check_ranges') == [3, 3, 3]  # not 5 of 2 and a fan-out
    assert _sizes('fan_out') == []


def test_a_dry_run_sizes_its_tasks_as_a_restore(nine_ranges, run_tasks,
                                                monkeypatch):
    monkeypatch.setattr(defaults, 'SHARDS', 2)
    monkeypatch.setattr(waves, 'INLINE_RANGES', 2)  # tasks in its commit
    nine_ranges.restore(dry_run=True)
    assert _sizes('plan_ranges') == [5, 4]
    run_tasks(recursive=True)
    assert api.get_snapshot(nine_ranges.id).plan_progress()['plan'] == {
        'Dummy': {'created': 0, 'changed': 0, 'deleted': 0}}


@pytest.mark.parametrize('phase', ['check_ranges', 'restore_ranges'])
def test_a_sharded_snapshot_is_cut_span_by_span_into_whole_waves(
        make_entities, finished_snapshot, run_tasks, sharded, monkeypatch,
        phase):
    make_entities(Dummy, 90)
    snap = finished_snapshot(['Dummy'], batchsize=10)
    assert [count for _, count in snap.spans('Dummy')] == [3, 2, 2, 4]
    monkeypatch.setattr(waves, 'INLINE_RANGES', 4)  # tasks in its commit
    before = all_bytes(['Dummy'])
    snap.restore()
    until_queued(run_tasks, phase)
    # A task a span: 4 tasks, in the start's commit (not 5 of 3, 3, 3 and
    # 2 after a fan-out task), and one wave of the 4 workers (not two).
    assert _sizes(phase) == [3, 2, 2, 4]
    assert _sizes('fan_out') == []
    run_tasks(recursive=True)
    assert all_bytes(['Dummy']) == before
    _assert_finished(snap)


class _Pushes:
    """A pusher that keeps the names it is told of, in order."""

    def __init__(self):
        self.told = []

    def announce(self, names, due, transactional=False, attempt=0):
        self.told.append(list(names))


def test_a_page_of_tasks_queues_the_next_page_first(nine_ranges,
                                                     monkeypatch):
    monkeypatch.setattr(waves, 'WRITE_RANGES', 1)  # 9 writing tasks
    monkeypatch.setattr(restore, 'FAN_OUT', 2)  # 5 pages of them
    before = all_bytes(['Dummy'])
    pushes = _Pushes()
    with push.use(pushes):
        nine_ranges.restore()
        done = 0
        while done < sum(map(len, pushes.told)):  # each as it is pushed
            async_.run_task([name for names in pushes.told
                             for name in names][done])
            done += 1
    assert all_bytes(['Dummy']) == before
    told = [name.split('#')[0].split(':')[1] for names in pushes.told
            for name in names]
    assert told == ['check_ranges'] + ['fan_out', 'restore_ranges',
                                       'restore_ranges'] * 4 + [
        'restore_ranges']


@pytest.mark.parametrize('phase, inline, workers', [
    ('check_ranges', 3, 8),     # three checks, in the starting commit
    ('restore_ranges', 1, 16)])  # nine writing tasks
def test_a_copy_that_dies_after_seeing_the_end_stops_no_one(
        nine_ranges, run_tasks, monkeypatch, phase, inline, workers):
    """Tasks run at least once: a stale copy of a task whose queue entry is
    gone may also find its job complete, then die before it acts. The
    part that really ended the job still goes on."""
    from lovely_gae import completion
    from lovely_gae.testing import rerun
    monkeypatch.setattr(defaults, 'SHARDS', workers)
    monkeypatch.setattr(waves, 'INLINE_RANGES', inline)
    before = all_bytes(['Dummy'])
    nine_ranges.restore()
    tasks = {task.name: task for task in until_queued(run_tasks, phase)}
    assert len(tasks) > 1
    for _ in range(len(tasks) - 1):  # all but the last
        assert run_tasks(max_tasks=1) == 1
    [last] = [task.name for task in queued(phase)]
    zombie = next(task for name, task in tasks.items() if name != last)
    real = completion.mark, restore._start_writing, restore.ENDS['write']

    def mark(job, index, *args):
        total = real[0](job, index, *args)
        if total:  # the last part found the job complete; meanwhile ...
            monkeypatch.setattr(completion, 'mark', real[0])
            monkeypatch.setattr(restore, '_start_writing', dies)
            monkeypatch.setitem(restore.ENDS, 'write', dies)
            with pytest.raises(SystemExit):
                rerun(zombie)  # ... a stale copy saw it too, and died
            monkeypatch.setattr(restore, '_start_writing', real[1])
            monkeypatch.setitem(restore.ENDS, 'write', real[2])
        return total

    def dies(*args):
        raise SystemExit('the process of a stale copy ended')
    monkeypatch.setattr(completion, 'mark', mark)
    run_tasks(recursive=True)
    assert async_.get_tasks() == []
    _assert_finished(nine_ranges)
    assert all_bytes(['Dummy']) == before


@pytest.mark.parametrize('workers', [1, 4])
def test_a_finished_restore_keeps_no_marker_of_its_checks(
        nine_ranges, run_tasks, monkeypatch, workers):
    """The markers that count a restore's checks are gone once it has
    finished (those of its writing stay while it is kept: a late copy of
    a writing task finds them and puts nothing back)."""
    from lovely_gae.snapshot.restores import Restore
    monkeypatch.setattr(defaults, 'SHARDS', workers)
    nine_ranges.restore()

    def checks():
        [record] = Restore.all()
        return markers(record.job('check'))
    until_queued(run_tasks, 'restore_ranges')
    assert checks()
    run_tasks(recursive=True)
    _assert_finished(nine_ranges)
    assert checks() == []


def test_a_late_start_of_the_writing_puts_nothing_back_again(
        nine_ranges, run_tasks, monkeypatch):
    """A task that saw the last check in but queued the writing only after
    the restore had finished (it read the record before) sends the
    writing tasks again: they find the restore finished and put nothing
    back over what the app wrote since."""
    from lovely_gae.snapshot.restores import Restore
    from lovely_gae.snapshot.work import locks
    monkeypatch.setattr(defaults, 'SHARDS', 4)
    nine_ranges.restore()
    [late] = Restore.all()  # as read by that task: checking
    run_tasks(recursive=True)
    _assert_finished(nine_ranges)
    since = Dummy.all().get()
    since.title = 'written since'
    since.put()
    restore._start_writing(late)
    # Finished it stays: were it stored running again, and its queued
    # tasks deleted by copies still running, it would run for ever.
    assert Restore.get(late.key()).to_dict()['status'] == 'finished'
    assert _sizes('restore_ranges')
    run_tasks(recursive=True)
    assert Dummy.get(since.key()).title == 'written since'
    _assert_finished(nine_ranges)
    assert list(locks.held()) == []


def test_the_start_of_the_writing_stored_again_does_not_write_again(
        nine_ranges, run_tasks, monkeypatch):
    """``_start_writing`` stores the writing tasks, then the marker that
    the writing began, and a request is sent again on a transient error.
    A request that timed out was often applied all the same: its tasks
    run, the restore finishes and frees its kinds, and only then does the
    retry store the tasks again, and the marker: they find the restore
    finished and put nothing back over what the app wrote since."""
    from google.appengine.ext import db
    sent = []
    real = async_.defer_many

    def defer_many(tasks, then=()):
        real(tasks, then)
        if then:
            sent.append((list(tasks), list(then)))
    monkeypatch.setattr(async_, 'defer_many', defer_many)
    nine_ranges.restore()
    run_tasks(recursive=True)  # the first try landed; its tasks ran
    _assert_finished(nine_ranges)
    [(tasks, then)] = sent
    written = Dummy(title='written once the restore had finished').put()
    real(tasks, then)  # the retries of the requests (retrying: same lists)
    run_tasks(recursive=True)
    _assert_finished(nine_ranges)
    assert db.get(written) is not None


@pytest.mark.parametrize('record_landed', [False, True])
def test_the_locks_and_markers_go_even_if_the_last_part_dies_first(
        nine_ranges, run_tasks, monkeypatch, fast_retries,
        record_landed):
    """``_finish`` stores the record finished, and deletes the locks and
    the checks' markers, at once. A task may die at any point, and either
    may land without the other: its retry (or a copy) finds the restore
    running, or finished, and ends it, or deletes them. The kinds can be
    restored again."""
    from lovely_gae.snapshot.restores import Restore
    from lovely_gae.snapshot.work import locks
    real, died = restore.delete_all, []

    def delete_all(keys):
        if not died:
            died.append(True)
            if record_landed:  # the record's put landed first
                [record] = Restore.all()
                record.status = 'finished'
                record.put()
            raise RuntimeError('the process ended')
        return real(keys)
    monkeypatch.setattr(restore, 'delete_all', delete_all)
    nine_ranges.restore()
    [record] = Restore.all()
    run_tasks(recursive=True, wait=True)
    assert died
    _assert_finished(nine_ranges)
    assert markers(record.job('check')) == []
    assert locks.held().count() == 0
    nine_ranges.restore()  # not refused: its kinds are free
    run_tasks(recursive=True)
    assert len(Restore.all().fetch(5)) == 2
    _assert_finished(nine_ranges)


def test_a_writing_task_that_sees_the_checks_still_running_is_not_lost(
        nine_ranges, run_tasks, monkeypatch, fast_retries):
    """The writing is marked begun once its tasks are stored (see
    ``test_a_start_of_the_writing_that_stored_only_its_marker_is_tried_
    again``), while they are pushed: a worker (pushed, or one that
    sweeps) may take one before the marker lands. Were it to return,
    seeing the restore still checking, the task would be gone: its part
    never done, the restore running for ever, its kinds locked. It is
    tried again instead."""
    from lovely_gae import entities
    late = []
    real = async_.defer_many

    def defer_many(tasks, then=()):
        real(tasks)  # the tasks land first ...
        late.extend(then)  # ... the marker a moment later
    monkeypatch.setattr(async_, 'defer_many', defer_many)
    nine_ranges.restore()
    first = until_queued(run_tasks, 'restore_ranges')[0].name
    assert async_.run_task(first)  # a worker takes it meanwhile
    entities.put(late)  # the writing began
    run_tasks(recursive=True, wait=True)
    _assert_finished(nine_ranges)


def test_a_start_of_the_writing_that_stored_only_its_marker_is_tried_again(
        nine_ranges, run_tasks, monkeypatch, fast_retries):
    """Datastore's non-transactional commits "may not apply as all or
    none" (CommitRequest.Mode). If the marker that the writing began were
    stored in the request that stores the first writing tasks, and only
    the marker landed, the retry of the task that saw the last check
    would find the writing begun and queue nothing: the restore would run
    for ever, its kinds locked. The marker is stored once its tasks are."""
    from lovely_gae import entities
    from lovely_gae.snapshot.restores import Restore
    real, torn = entities.put, []

    def put(protos):
        protos = list(protos)
        tasks = [pb for pb in protos
                 if b':restore_ranges' in pb.SerializeToString()]
        if tasks and not torn:  # this request lands only in part
            torn.append(True)
            real([pb for pb in protos if pb not in tasks])
            raise RuntimeError('the commit failed part way')
        return real(protos)
    monkeypatch.setattr(entities, 'put', put)
    nine_ranges.restore()
    run_tasks(recursive=True, wait=True)
    assert torn
    [record] = Restore.all()
    assert record.status == 'finished'
    _assert_finished(nine_ranges)


def _run_tasks_of(restore_id):
    """Run the queued tasks of restore ``restore_id``, and those they
    queue, one at a time, till none is left; the others stay queued."""
    while True:
        mine = [task.name for task in async_.get_tasks()
                if task.arguments()[0][:1] == [restore_id]]
        if not mine:
            return
        async_.run_task(mine[0])


def test_a_late_end_of_a_restore_frees_none_of_the_next_ones_locks(
        nine_ranges, run_tasks, monkeypatch):
    """The tasks that see a restore's last part each free its locks by key,
    as they read them when they stored their part. One that stalls (a
    retry) until the next restore of the kind has taken it must not free
    that one's lock: the next restore would find it gone and fail."""
    from google.appengine.ext import db as gdb
    from lovely_gae.snapshot.restores import Restore
    from lovely_gae.snapshot.work import locks
    seen, real = [], restore.ENDS['write']

    def end(found, counts):
        seen.append(([gdb.model_from_protobuf(gdb.model_to_protobuf(model))
                      for model in found], dict(counts)))  # as read
        return real(found, counts)
    monkeypatch.setitem(restore.ENDS, 'write', end)
    nine_ranges.restore()
    run_tasks(recursive=True)
    _assert_finished(nine_ranges)
    Dummy(title='written since').put()
    nine_ranges.restore()  # the next one takes the kind
    [following] = [record for record in Restore.all()
                   if record.status == 'checking']
    found, counts = seen[0]
    real(found, counts)  # the stalled end of the first comes now
    assert [lock.restore_id for lock in locks.held()] == [following.id]
    run_tasks(recursive=True)
    assert Restore.get(following.key()).status == 'finished'
    assert not any(entity.title == 'written since' for entity in Dummy.all())


@pytest.mark.parametrize('since', ['freed', 'taken'])
def test_a_late_start_of_the_writing_over_a_failure_writes_nothing(
        nine_ranges, run_tasks, monkeypatch, since):
    """A task that saw the last check in stalls for minutes; meanwhile a
    writing task fails for good (``restore_failed``: the record ``error``,
    the kinds freed) and a second restore may take the kind. Then it
    sends the writing tasks again (it read the record before): they find
    the restore failed and put nothing back; it stays failed with its
    error (it used to be stored ``running`` over it)."""
    from lovely_gae.snapshot.restores import Restore
    from lovely_gae.snapshot.work import locks
    monkeypatch.setattr(defaults, 'SHARDS', 4)
    nine_ranges.restore()
    [late] = Restore.all()  # as read by the stalled task: checking
    until_queued(run_tasks, 'restore_ranges')
    restore.restore_failed('restore_ranges failed after 5 attempts',
                           late.id)
    run_tasks(recursive=True)  # the writing tasks find it failed
    db.delete(Dummy.all(keys_only=True).fetch(20))  # the app writes on
    Dummy(title='written since').put()
    before = all_bytes(['Dummy'])
    if since == 'taken':
        nine_ranges.restore()  # the kind is free: a second restore
    holders = [lock.restore_id for lock in locks.held()]
    restore._start_writing(late)
    assert Restore.get(late.key()).to_dict()['status'] == 'error'
    assert _sizes('restore_ranges')
    _run_tasks_of(late.id)
    assert all_bytes(['Dummy']) == before  # not one entity put back
    record = Restore.get(late.key())
    assert record.status == 'error'
    assert record.error == 'restore_ranges failed after 5 attempts'  # first
    assert [lock.restore_id for lock in locks.held()] == holders
    assert markers(late.job('write')) == []
    run_tasks(recursive=True)  # the second restore, if any, runs
    assert Restore.get(late.key()).status == 'error'
    assert async_.get_tasks() == []
    assert locks.held().count() == 0
    if since == 'taken':
        assert all_bytes(['Dummy']) != before  # the second put it back


def test_a_late_start_of_the_writing_keeps_the_first_error(
        nine_ranges, run_tasks, monkeypatch):
    """The task that saw the last check in stalls; meanwhile a copy of a
    check task finds its range damaged and fails the restore, saying
    which range. The stalled task sends the writing tasks: what the user
    reads is still the restore failed with that first error, the one
    that says what is wrong, and nothing was put back."""
    from lovely_gae.snapshot.restores import Restore
    monkeypatch.setattr(defaults, 'SHARDS', 4)
    db.delete(Dummy.all(keys_only=True).fetch(20))  # what a restore mends
    before = all_bytes(['Dummy'])
    real, damaged = restore._start_writing, []

    def stalls(record):
        if not damaged:
            kind, first, count = waves.leaf(record, 'check', 0)
            [backup] = [rb for rb in nine_ranges.range_backups(kind)
                        if rb.position == first]
            data = bytearray(backup.data)
            data[len(data) // 2] ^= 1
            backup.data = bytes(data)
            backup.put()
            damaged.append(backup.name)
            restore.check_ranges(record.id, record.snapshot_id,
                                 record.namespace, 0, kind, first, count)
            assert Restore.get(record.key()).status == 'error'
        real(record)
    monkeypatch.setattr(restore, '_start_writing', stalls)
    nine_ranges.restore()
    run_tasks(recursive=True)
    assert damaged
    progress = api.get_snapshot(nine_ranges.id).restore_progress()
    assert progress['status'] == 'error'
    assert progress['error'] == (
        'range %s: stored bytes do not match their sha256' % damaged[0])
    assert all_bytes(['Dummy']) == before  # not one range put back
    assert async_.get_tasks() == []


def test_a_dry_run_counts_kinds_another_restore_holds(nine_ranges,
                                                      run_tasks):
    """A dry run holds no lock and writes nothing: its tasks count on
    while a restore holds its kinds."""
    from lovely_gae.snapshot.restores import Restore
    from lovely_gae.snapshot.work import locks
    nine_ranges.restore()
    [holder] = Restore.all()
    nine_ranges.restore(dry_run=True)
    [dry_run] = [record for record in Restore.all() if record.dry_run]
    _run_tasks_of(dry_run.id)
    assert api.get_snapshot(nine_ranges.id).plan_progress()['plan'] == {
        'Dummy': {'created': 0, 'changed': 0, 'deleted': 0}}
    assert [lock.restore_id for lock in locks.held()] == [holder.id]
    run_tasks(recursive=True)
    _assert_finished(nine_ranges)


def test_a_restore_is_read_in_one_call_with_the_marker_of_its_writing(
        nine_ranges, run_tasks, datastore_calls):
    """While a restore is checking, whether its writing began is a marker
    of its own: a poll (``get_restore``) and the snapshot's progress read
    it with the record, one call each, not one after the other."""
    from lovely_gae.snapshot import calls
    nine_ranges.restore()
    for polled, writing in ((False, 'checking'), (True, 'running')):
        if polled:
            until_queued(run_tasks, 'restore_ranges')  # the checks passed
        datastore_calls.clear()
        answer = calls.get_restore(nine_ranges.id, nine_ranges.restore_id)
        assert answer['status'] == writing
        assert datastore_calls[:1] == ['Get'] and (
            'Get' not in datastore_calls[1:]), datastore_calls
        datastore_calls.clear()
        assert nine_ranges.restore_progress()['status'] == writing
        assert 'Get' not in datastore_calls[1:], datastore_calls
