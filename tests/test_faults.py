"""Snapshots and restores stay exact under transient faults and many workers."""
import threading
import time

import pytest
from google.appengine.ext import db

from lovely_gae import async_, entities, taskstore
from lovely_gae.base import TRANSIENT_ERRORS
from lovely_gae.snapshot import api
from lovely_gae.snapshot.work import ranges
from lovely_gae.snapshot.storage import RangeWriter
from lovely_gae.snapshot.models import RangeBackup, RangeBackupPart
from tests.conftest import Dummy, Yummy, all_bytes


class Zummy(db.Model):
    title = db.StringProperty()


def drain_despite_errors(limit=200):
    """Call run_tasks until the queue is empty, as a cron worker would."""
    errors = 0
    for _ in range(limit):
        try:
            async_.run_tasks(recursive=True)
        except TRANSIENT_ERRORS:
            errors += 1
            continue
        if not async_.get_tasks():
            return errors
    raise AssertionError('queue never drained')


def test_snapshot_and_restore_are_exact_with_every_6th_write_failing(
        make_entities, faulty_datastore, fast_retries):
    keys = make_entities(Dummy, 230) + make_entities(Yummy, 170)
    before = all_bytes(['Dummy', 'Yummy'])
    fault = faulty_datastore(every=6)
    snap = api.create_snapshot(['Dummy', 'Yummy'], batchsize=10)
    drain_despite_errors()
    assert fault.injected > 10
    snap = api.get_snapshot(snap.id)
    assert snap.status == snap.STATUS_FINISHED, snap.error
    assert snap.verify() == []
    # Both kinds are cut into shards: 23 and 17 ranges at least.
    assert RangeBackup.all().count() == snap.ranges_total() >= 23 + 17
    assert snap.kind_entities == {'Dummy': 230, 'Yummy': 170}
    assert snap.progress()['entities'] == 400

    fault.enabled = False
    db.delete(keys[::3])
    make_entities(Dummy, 40)
    fault.enabled = True
    snap.restore()
    drain_despite_errors()
    fault.enabled = False
    assert all_bytes(['Dummy', 'Yummy']) == before
    assert api.get_snapshot(snap.id).restore_progress()['status'] == \
        'finished'


def test_a_task_that_keeps_failing_puts_the_snapshot_in_error(
        make_entities, fast_retries, monkeypatch, run_tasks):
    make_entities(Dummy, 30)
    monkeypatch.setattr('lovely_gae.defaults.MAX_ATTEMPTS', 3)

    class Broken(RangeWriter):
        def add_all(self, records):
            raise RuntimeError('disk on fire')
    monkeypatch.setattr(ranges, 'RangeWriter', Broken)
    snap = api.create_snapshot(['Dummy'], batchsize=10)
    run_tasks(recursive=True, wait=True, deadline=30)
    snap = api.get_snapshot(snap.id)
    assert snap.status == snap.STATUS_ERROR
    assert 'store_ranges failed after 3 attempts' in snap.error
    assert 'RuntimeError: disk on fire' in snap.error
    failed = async_.get_failed_tasks()
    # Once the snapshot is in error, its other tasks stop without work
    # (those that ran meanwhile failed as often).
    assert {t.attempts for t in failed} == {3}
    assert async_.get_tasks() == []


def test_retries_back_off(gae_testbed, run_tasks, task_clock):
    async_.defer('builtins:int', args=('x',), retry_delay=0.5)
    assert run_tasks(clock=task_clock) == 1
    [task] = async_.get_tasks()
    wait = (task.due - task.created).total_seconds()
    assert 0.4 < wait < 1.5
    assert run_tasks(clock=task_clock) == 0  # not due yet
    assert run_tasks(recursive=True, wait=True, deadline=3, max_tasks=1,
                     clock=task_clock) == 1
    [task] = async_.get_tasks()
    assert task.attempts == 2


def test_a_dead_workers_task_is_taken_over_after_its_lease(
        gae_testbed, run_tasks, task_clock):
    async_.defer('builtins:print', args=('x',))
    [task] = async_.get_tasks()
    [lease] = taskstore.lease([entities.ref(task.key())], 'dead-worker',
                              task_clock.now(), 0.2)[0]
    assert lease.attempts == 1
    assert run_tasks(clock=task_clock) == 0  # leased to the dead worker
    assert run_tasks(recursive=True, wait=True, deadline=5,
                     clock=task_clock) == 1
    assert async_.get_tasks() == []


def test_bookkeeping_errors_raise_but_the_next_call_carries_on(
        make_entities, faulty_datastore, fast_retries):
    make_entities(Dummy, 20)
    snap = api.create_snapshot(['Dummy'], batchsize=5)
    fault = faulty_datastore(every=1, methods=('Commit',))
    with pytest.raises(TRANSIENT_ERRORS):
        async_.run_tasks(recursive=True)
    fault.enabled = False
    async_.run_tasks(recursive=True)
    assert api.get_snapshot(snap.id).status == 'finished'


def in_four_threads(work):
    """Run ``work`` in four threads started together; the errors raised."""
    errors = []
    start = threading.Barrier(4)

    def worker():
        start.wait()
        try:
            work()
        except Exception as error:  # pragma: no cover - shown on failure
            errors.append(error)
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


def test_four_threads_drain_a_three_kind_snapshot_storing_each_range_once(
        make_entities, monkeypatch):
    make_entities(Dummy, 120)
    make_entities(Yummy, 90)
    make_entities(Zummy, 60)
    stored, lock, second = [], threading.Lock(), threading.Event()

    class Counting(RangeWriter):
        def __init__(self, *args, **kwargs):
            with lock:
                first = not stored
                stored.append(threading.get_ident())
                if len(set(stored)) > 1:
                    second.set()
            # The first worker to store waits for a second one: that more
            # than one stores is made sure of, not left to the scheduler.
            if first:
                assert second.wait(60), 'no second worker stored a range'
            super().__init__(*args, **kwargs)
    monkeypatch.setattr(ranges, 'RangeWriter', Counting)
    # Leases of two tasks: the first to store waits holding its task and
    # one more at most, which hold back two kinds' ranges at most; the
    # other workers store the third kind's.
    monkeypatch.setattr(taskstore, 'BATCH', 2)
    snap = api.create_snapshot(['Dummy', 'Yummy', 'Zummy'], batchsize=4)
    busy = [0]

    def drain():  # poll as a worker does, until nothing is left to run
        stop_at = time.monotonic() + 60
        while True:
            # get_tasks reads leases, then the queue: a task leased in
            # between is in neither. Read while no worker runs, it is exact.
            with lock:
                if not busy[0] and not async_.get_tasks():
                    return
                busy[0] += 1
            try:
                async_.run_tasks(recursive=True)
            finally:
                with lock:
                    busy[0] -= 1
            assert time.monotonic() < stop_at, 'the queue never drained'
            time.sleep(0.001)
    assert in_four_threads(drain) == []
    snap = api.get_snapshot(snap.id)
    assert snap.status == snap.STATUS_FINISHED
    total = snap.ranges_total()  # Dummy is cut into shards; 30 ranges at least
    assert total >= 30 + 23 + 15  # 120, 90 and 60 entities in ranges of 4
    assert len(stored) == total  # each range read and stored once
    assert len(set(stored)) > 1  # by more than one worker
    assert RangeBackup.all().count() == total
    assert RangeBackupPart.all().count() == 0
    kinds = {kind: snap.range_count(kind) for kind in snap.kinds}
    assert snap.progress() == {
        'ranges_done': total, 'ranges_total': total, 'entities': 270,
        'bytes': snap.stored_bytes,
        'by_kind': {kind: {'ranges_done': count, 'ranges_total': count}
                    for kind, count in kinds.items()}}
    assert sum(kinds.values()) == total
    assert snap.verify() == []


def test_four_threads_running_every_range_task_store_each_range_once(
        make_entities, run_tasks, unsharded):
    make_entities(Dummy, 120)
    make_entities(Yummy, 90)
    snap = api.create_snapshot(['Dummy', 'Yummy'], batchsize=4)
    run_tasks()  # the passes
    run_tasks()  # their callbacks queue a task per range
    tasks = async_.get_tasks()
    assert len(tasks) == 30 + 23

    def run_all():  # each thread runs every range, as racing retries
        for task in tasks:
            args, kwargs = task.arguments()
            async_.resolve(task.func)(*args, **kwargs)
    assert in_four_threads(run_all) == []
    snap = api.get_snapshot(snap.id)
    assert snap.status == snap.STATUS_FINISHED
    assert snap.rangebackup_set.count() == 30 + 23
    assert RangeBackupPart.all().count() == 0
    assert snap.progress()['entities'] == 210
    assert snap.verify() == []
