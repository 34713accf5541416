"""Ranges hold up in production: no truncation, the 1 MiB limits, retries."""
import os
import tracemalloc

import pytest
from google.appengine.ext import db

from lovely_gae import async_, batch, defaults, entities
from lovely_gae.snapshot import api, client, devfile, ranges
from lovely_gae.snapshot.keylists import RangeKeys
from lovely_gae.snapshot.models import RangeBackup, RangeBackupPart, Snapshot
from tests.conftest import Dummy, all_bytes


class Heavy(db.Model):
    payload = db.BlobProperty()


def test_range_of_2500_entities_round_trips_exactly(make_entities,
                                                    finished_snapshot,
                                                    run_tasks):
    keys = make_entities(Dummy, 2500)
    before = all_bytes(['Dummy'])
    snap = finished_snapshot(['Dummy'], batchsize=5000)
    [backup] = snap.range_backups()
    assert backup.count == 2500
    db.delete(keys[:1500])
    added = make_entities(Dummy, 2500)  # restore must find and delete all
    snap.restore()
    run_tasks(recursive=True)
    assert all_bytes(['Dummy']) == before
    assert db.get(added[-1]) is None


def test_incompressible_6_mb_are_stored_in_parts_and_come_back_exactly(
        gae_testbed, finished_snapshot, run_tasks, tmp_path):
    db.put([Heavy(payload=os.urandom(40 * 1000)) for _ in range(150)])
    before = all_bytes(['Heavy'])
    snap = finished_snapshot(['Heavy'])
    [backup] = snap.range_backups()
    assert backup.size > 6 * 1000 * 1000
    assert backup.parts == -(-backup.size // defaults.PART_SIZE)
    parts = list(backup.iter_parts())
    assert all(len(p) <= defaults.PART_SIZE for p in parts)
    assert RangeBackupPart.all().count() == backup.parts - 1

    db.delete(list(Heavy.all(keys_only=True)))
    snap.restore()
    run_tasks(recursive=True)
    assert all_bytes(['Heavy']) == before

    path = client.download_snapshot(str(tmp_path), snap.id,
                                    progress=lambda event, **info: None)
    with open(path, 'rb') as f:
        assert sorted(devfile.iter_entities(f)) == before


def _peak_bytes(func):
    """Peak memory of ``func`` beyond what it leaves allocated at its end.

    What is still allocated at the end is what the in-memory datastore stub
    now holds (the stored range, the restored entities): the datastore's
    memory, not the worker's.
    """
    tracemalloc.start()
    try:
        func()
        retained, peak = tracemalloc.get_traced_memory()
        return peak - retained
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize('codec', ['zlib', 'none'])
def test_memory_while_storing_and_restoring_is_bounded_by_a_part(
        gae_testbed, run_tasks, monkeypatch, codec, scan_mode):
    # bz2's own state is a fixed 7.5 MB at level 9, whatever the range
    # size; the codecs here keep the measurement about our buffers.
    monkeypatch.setattr(defaults, 'PART_SIZE', 256 * 1024)
    # Query batches keep their default size: a batch of whole entities
    # must shrink to fit, as 300 of these would hold 6 MB.
    entity_size = 20 * 1000
    db.put([Heavy(payload=os.urandom(entity_size)) for _ in range(400)])
    range_bytes = 400 * entity_size
    allowance = 6 * defaults.PART_SIZE + 3 * 20 * entity_size
    assert allowance < range_bytes / 2
    snap = api.create_snapshot(['Heavy'], batchsize=1000, codec=codec)
    # The markers pass (it reads and stages the range, unless it lists
    # keys only), its callback, the range's task (it reads or commits it).
    for _ in range(3):
        assert _peak_bytes(run_tasks) < allowance
    assert api.get_snapshot(snap.id).status == 'finished'
    db.delete(list(Heavy.all(keys_only=True)))
    snap.restore()
    assert _peak_bytes(lambda: run_tasks(recursive=True)) < allowance
    assert Heavy.all().count() == 400


def test_a_range_task_run_twice_stores_the_range_once(make_entities,
                                                      run_tasks, scan_mode):
    make_entities(Dummy, 30)
    snap = api.create_snapshot(['Dummy'], batchsize=10)
    run_tasks()
    run_tasks()
    tasks = async_.get_tasks()
    assert len(tasks) == 3
    for task in tasks:  # each range twice, as a retry would
        args, kwargs = task.arguments()
        ranges.store_range(*args, **kwargs)
    make_entities(Dummy, 3)  # a second run would now store other bytes
    run_tasks(recursive=True)
    snap = api.get_snapshot(snap.id)
    assert snap.status == snap.STATUS_FINISHED
    assert snap.rangebackup_set.count() == 3
    assert snap.progress()['entities'] == 30
    assert RangeBackupPart.all().count() == 0


def test_a_losing_racer_leaves_no_parts_behind(gae_testbed, run_tasks,
                                               monkeypatch, keys_pass):
    monkeypatch.setattr(defaults, 'PART_SIZE', 64 * 1024)
    db.put([Heavy(payload=os.urandom(10 * 1000)) for _ in range(30)])
    snap = api.create_snapshot(['Heavy'])
    run_tasks()
    run_tasks()
    [task] = async_.get_tasks()
    args, kwargs = task.arguments()
    key_list = list(RangeKeys.all())  # what a racing worker read already
    ranges.store_range(*args, **kwargs)
    assert RangeKeys.all().count() == 0  # the winner cleans up its list
    db.put(key_list)
    parts = RangeBackupPart.all().count()
    assert parts >= 4
    entities_stored = api.get_snapshot(snap.id).progress()['entities']
    # A second worker that checked the snapshot before the first committed:
    real_is_done = Snapshot.is_done
    checks = []

    def stale_first_check(self, *args, **kwargs):
        checks.append(args)
        return len(checks) > 1 and real_is_done(self, *args, **kwargs)
    monkeypatch.setattr(Snapshot, 'is_done', stale_first_check)
    ranges.store_range(*args, **kwargs)
    monkeypatch.undo()
    assert len(checks) == 2  # it did the work, then lost in the commit
    assert RangeBackup.all().count() == 1
    assert RangeBackupPart.all().count() == parts
    assert RangeKeys.all().count() == 0
    assert api.get_snapshot(snap.id).progress()['entities'] == \
        entities_stored


def test_a_retried_callback_queues_its_ranges_once(make_entities, run_tasks):
    make_entities(Dummy, 25)
    snap = api.create_snapshot(['Dummy'], batchsize=10)
    run_tasks()
    [callback] = async_.get_tasks()
    args, kwargs = callback.arguments()
    ranges.markers_ready(*args, **kwargs)  # as if it ran, then crashed
    ranges.markers_ready(*args, **kwargs)  # and its retry
    assert len(async_.get_tasks()) == 1 + 3
    assert run_tasks(recursive=True) == 4  # the callback once more, 3 ranges
    assert api.get_snapshot(snap.id).rangebackup_set.count() == 3


def test_puts_and_deletes_respect_the_request_limit(gae_testbed):
    big = [Heavy(payload=b'x' * 600 * 1000) for _ in range(6)]
    db.put(big)
    pbs = list(entities.iter_range('Heavy', ''))
    entities.delete([p.key for p in pbs])
    entities.put(pbs)  # one call, several requests of at most 1 MiB
    assert Heavy.all().count() == 6


def test_a_restore_puts_large_entities_in_requests_of_at_most_1_mib(
        gae_testbed, finished_snapshot, run_tasks, monkeypatch):
    db.put([Heavy(payload=os.urandom(300 * 1000)) for _ in range(7)])
    before = all_bytes(['Heavy'])
    snap = finished_snapshot(['Heavy'])
    db.delete(list(Heavy.all(keys_only=True)))
    requests = []
    put_encoded = entities.put_encoded

    def spy(records):
        requests.append(sum(len(r) + 4 for r in records))
        put_encoded(records)
    monkeypatch.setattr(entities, 'put_encoded', spy)
    snap.restore()
    run_tasks(recursive=True)
    assert all_bytes(['Heavy']) == before
    assert len(requests) == 3
    assert max(requests) <= 1024 * 1024


@pytest.mark.parametrize('codec', ['bz2', 'zlib', 'lzma', 'none'])
def test_every_codec_round_trips(make_entities, finished_snapshot, run_tasks,
                                 codec):
    keys = make_entities(Dummy, 40)
    before = all_bytes(['Dummy'])
    snap = finished_snapshot(['Dummy'], batchsize=15, codec=codec)
    assert {rb.codec for rb in snap.range_backups()} == {codec}
    db.delete(keys[::2])
    snap.restore()
    run_tasks(recursive=True)
    assert all_bytes(['Dummy']) == before


def test_a_markers_pass_run_twice_leaves_one_backup_per_range(
        gae_testbed, run_tasks, monkeypatch):
    monkeypatch.setattr(defaults, 'PART_SIZE', 16 * 1024)
    db.put([Heavy(payload=os.urandom(2000)) for _ in range(45)])
    before = all_bytes(['Heavy'])
    snap = api.create_snapshot(['Heavy'], batchsize=10)
    [markers_task] = async_.get_tasks()
    args, kwargs = markers_task.arguments()
    batch._markers_task(*args, **kwargs)  # ran, then its worker died
    staged = RangeBackup.all().count()
    assert staged == 5
    # The retry stages every range again; of the two callbacks, the first
    # one's markers win, and the other one discards what its pass staged.
    assert run_tasks(recursive=True) == 1 + 2 + 5
    snap = api.get_snapshot(snap.id)
    assert snap.status == snap.STATUS_FINISHED
    backups = snap.range_backups()
    assert [b.position for b in backups] == [0, 1, 2, 3, 4]
    assert RangeBackup.all().count() == 5  # nothing staged is left
    assert RangeBackupPart.all().count() == sum(b.parts - 1 for b in backups)
    assert snap.verify() == []
    db.delete(list(Heavy.all(keys_only=True)))
    snap.restore()
    run_tasks(recursive=True)
    assert all_bytes(['Heavy']) == before


def test_ranges_staged_and_ranges_read_by_keys_make_one_snapshot(
        make_entities, run_tasks, monkeypatch):
    keys = make_entities(Dummy, 95)
    before = all_bytes(['Dummy'])
    clock = [0.0]  # storing a range takes a second
    monkeypatch.setattr(batch.time, 'monotonic', lambda: clock[0])
    stage = ranges.stage_range

    def slow_stage(*args):
        stage(*args)
        clock[0] += 1
    monkeypatch.setattr(defaults, 'SCAN_STORE_SECONDS', 3.5)
    snap = api.create_snapshot(['Dummy'], batchsize=10)
    monkeypatch.setitem(async_._registry, async_.dotted_name(
        ranges.stage_range), slow_stage)  # the task's
    run_tasks()
    assert RangeBackup.all().count() == 4  # staged until the time was up
    assert RangeKeys.all().count() == 6  # the other ranges' keys
    run_tasks(recursive=True)
    snap = api.get_snapshot(snap.id)
    assert snap.status == snap.STATUS_FINISHED
    assert snap.progress()['entities'] == 95
    assert RangeBackup.all().count() == 10
    assert RangeKeys.all().count() == 0
    db.delete(keys[::2])
    snap.restore()
    run_tasks(recursive=True)
    assert all_bytes(['Dummy']) == before


def test_markers_are_kept_apart_from_the_snapshot_entity(make_entities,
                                                         run_tasks,
                                                         monkeypatch):
    from lovely_gae.snapshot.keylists import SnapshotMarkers
    monkeypatch.setattr(SnapshotMarkers, 'CHUNK', 20)
    monkeypatch.setattr(batch, '_INLINE_MARKERS', 50)  # and not in a task
    keys = sorted(make_entities(Dummy, 150))
    before = all_bytes(['Dummy'])
    snap = api.create_snapshot(['Dummy'], batchsize=2)
    run_tasks(recursive=True)
    snap = api.get_snapshot(snap.id)
    assert snap.status == snap.STATUS_FINISHED
    assert snap.markers == {'Dummy': keys[2::2]}  # 74 markers
    assert SnapshotMarkers.all().count() == 4
    assert batch.MarkerList.all().count() == 0
    # Every range's task writes the snapshot: it stays small, however many
    # markers its kinds have.
    assert len(db.model_to_protobuf(snap).SerializeToString()) < 1000
    db.delete(keys[::3])
    snap.restore()
    run_tasks(recursive=True)
    assert all_bytes(['Dummy']) == before
    snap.delete()
    run_tasks(recursive=True)
    assert SnapshotMarkers.all().count() == 0


@pytest.mark.parametrize('codec', ['none', 'zlib', 'bz2'])
def test_records_of_every_length_come_back_across_part_boundaries(codec):
    from lovely_gae.snapshot import storage
    # Lengths whose varints take one, two and three bytes, and empty ones.
    records = [os.urandom(n) for n in (0, 1, 127, 128, 300, 16383, 16384,
                                       70000, 5, 0, 129)]
    writer = storage.RangeWriter(codec, part_size=37)
    parts = [part for record in records for part in writer.add(record)]
    parts += writer.close()
    assert len(parts) > 5
    assert list(storage.iter_records(parts, codec)) == records
    with pytest.raises(ValueError):
        list(storage.iter_records(parts[:-1], codec))


def _leftovers():
    return (RangeKeys.all().count(), batch.MarkerList.all().count(),
            sum(1 for b in RangeBackup.all() if b.name.startswith('RBS:')))


@pytest.mark.parametrize('store_seconds', [0.0, 1000.0, 6.5])
def test_a_markers_pass_in_several_tasks_makes_one_exact_snapshot(
        make_entities, run_tasks, monkeypatch, store_seconds,
        ticking_clock):
    keys = make_entities(Dummy, 95)
    before = all_bytes(['Dummy'])
    monkeypatch.setattr(defaults, 'PASS_SECONDS', 3.5)
    monkeypatch.setattr(defaults, 'SCAN_STORE_SECONDS', store_seconds)
    snap = api.create_snapshot(['Dummy'], batchsize=10)
    run_tasks(recursive=True)
    snap = api.get_snapshot(snap.id)
    assert snap.status == snap.STATUS_FINISHED
    assert len(snap.key_lists['Dummy']) > 2  # the pass took several tasks
    assert snap.markers['Dummy'] == batch.compute_markers('Dummy', 10)
    assert snap.progress()['entities'] == 95
    assert _leftovers() == (0, 0, 0)
    db.delete(keys[1::3])
    snap.restore()
    run_tasks(recursive=True)
    assert all_bytes(['Dummy']) == before


def test_a_continuing_task_run_twice_leaves_one_backup_per_range(
        make_entities, run_tasks, monkeypatch, ticking_clock):
    make_entities(Dummy, 95)
    before = all_bytes(['Dummy'])
    monkeypatch.setattr(defaults, 'PASS_SECONDS', 3.5)
    snap = api.create_snapshot(['Dummy'], batchsize=10)
    assert run_tasks() == 1  # the pass's first task queues the next
    [going_on] = async_.get_tasks()
    args, kwargs = going_on.arguments()
    batch._markers_task(*args, **kwargs)  # ran, then its worker died
    make_entities(Dummy, 7)  # its retry sees other ranges
    run_tasks(recursive=True)
    snap = api.get_snapshot(snap.id)
    assert snap.status == snap.STATUS_FINISHED
    count = snap.range_count('Dummy')
    assert [b.position for b in snap.range_backups()] == list(range(count))
    assert snap.rangebackup_set.count() == count
    assert snap.verify() == []
    # What the pass that lost staged is unseen, and goes with the snapshot.
    assert _leftovers() != (0, 0, 0)
    db.delete(list(Dummy.all(keys_only=True)))
    snap.restore()
    run_tasks(recursive=True)
    restored = all_bytes(['Dummy'])
    assert set(before) <= set(restored)
    assert len(restored) in (95, 102)
    snap.delete()
    run_tasks(recursive=True)
    assert RangeBackup.all().count() == 0
    assert _leftovers() == (0, 0, 0)


def test_a_pass_that_fails_for_good_leaves_nothing_once_deleted(
        make_entities, run_tasks, monkeypatch, fast_retries, ticking_clock):
    make_entities(Dummy, 95)
    monkeypatch.setattr(defaults, 'PASS_SECONDS', 3.5)
    monkeypatch.setattr(defaults, 'MAX_ATTEMPTS', 2)
    snap = api.create_snapshot(['Dummy'], batchsize=10)
    assert run_tasks() == 1  # the pass's first task queues the next
    assert batch.MarkerList.all().count() > 0  # what it found so far

    def broken(*args, **kwargs):
        raise RuntimeError('disk on fire')
    monkeypatch.setattr(batch, 'iter_ranges', broken)
    run_tasks(recursive=True, wait=True, deadline=30)
    snap = api.get_snapshot(snap.id)
    assert snap.status == snap.STATUS_ERROR
    snap.delete()
    run_tasks(recursive=True)
    assert _leftovers() == (0, 0, 0)
    assert RangeBackup.all().count() == 0


def _staged_range_tasks(make_entities, run_tasks):
    """A snapshot of 250 entities staged in 25 ranges; its range tasks, by
    position, queued and not run."""
    make_entities(Dummy, 250)
    snap = api.create_snapshot(['Dummy'], batchsize=10)
    run_tasks()  # the markers pass stages 25 ranges
    run_tasks()  # the callback queues their tasks
    tasks = sorted(async_.get_tasks(), key=lambda t: t.arguments()[0][2])
    return snap, tasks


def test_a_range_task_commits_the_staged_ranges_after_it(make_entities,
                                                         run_tasks):
    snap, tasks = _staged_range_tasks(make_entities, run_tasks)
    args, kwargs = tasks[0].arguments()
    ranges.store_range(*args, **kwargs)
    snap = api.get_snapshot(snap.id)
    progress = snap.progress()
    assert progress['ranges_done'] == ranges._COMMIT_BATCH
    assert progress['entities'] == 10 * ranges._COMMIT_BATCH
    backups = snap.range_backups()
    assert [b.start for b in backups[1:]] == [b.end for b in backups[:-1]]
    assert run_tasks(recursive=True) == 25  # the rest commit the last 5
    snap = api.get_snapshot(snap.id)
    assert snap.status == snap.STATUS_FINISHED
    assert snap.progress()['entities'] == 250
    assert RangeBackup.all().count() == 25  # nothing staged is left
    assert [b.end for b in snap.range_backups()][-1] is None
    assert snap.verify() == []


def test_a_commit_rewrites_no_more_than_its_bytes_allow(make_entities,
                                                        run_tasks,
                                                        monkeypatch):
    snap, tasks = _staged_range_tasks(make_entities, run_tasks)
    sizes = [len(b.data) for b in RangeBackup.all()]
    monkeypatch.setattr(ranges, '_COMMIT_BYTES', sizes[0] + sizes[1] + 1)
    args, kwargs = tasks[0].arguments()
    ranges.store_range(*args, **kwargs)
    progress = api.get_snapshot(snap.id).progress()
    assert progress['ranges_done'] == 2  # not 20: the bytes cut it
    assert run_tasks(recursive=True) == 25
    snap = api.get_snapshot(snap.id)
    assert snap.status == snap.STATUS_FINISHED
    assert snap.progress()['entities'] == 250
    assert RangeBackup.all().count() == 25
    assert snap.verify() == []


def test_the_tasks_of_a_committed_batch_read_nothing(make_entities, run_tasks,
                                                     datastore_calls):
    snap, tasks = _staged_range_tasks(make_entities, run_tasks)
    datastore_calls.clear()
    for task in tasks[:ranges._COMMIT_BATCH]:
        args, kwargs = task.arguments()
        ranges.store_range(*args, **kwargs)
        if task is tasks[0]:
            committing = len(datastore_calls)
    assert committing > 0
    assert len(datastore_calls) == committing  # the other 19: none
    assert run_tasks(recursive=True) == 25  # every task still runs once
    snap = api.get_snapshot(snap.id)
    assert snap.status == snap.STATUS_FINISHED
    assert snap.progress()['entities'] == 250
    assert snap.verify() == []


def test_a_snapshot_with_the_id_of_one_committed_before_stores_every_range():
    """Two testbeds in one process hand out the same snapshot ids; what
    this process remembers committed of the first must not skip the
    second's ranges."""
    from lovely_gae.testing import APP_ID, start_testbed
    ids = []
    for _ in range(2):
        bed = start_testbed(app_id=APP_ID)
        try:
            db.put([Dummy(title=str(i)) for i in range(60)])
            snap = api.create_snapshot(['Dummy'], batchsize=10)
            async_.run_tasks(recursive=True)
            snap = api.get_snapshot(snap.id)
            ids.append(snap.id)
            assert snap.status == snap.STATUS_FINISHED
            assert snap.progress()['entities'] == 60
            assert snap.range_count('Dummy') == 6
            assert RangeBackup.all().count() == 6
        finally:
            bed.deactivate()
    assert ids[0] == ids[1]
