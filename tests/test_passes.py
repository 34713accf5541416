"""A key pass that runs twice over data that changed in between still
leaves ranges that cover the kind once: no entity missed, none twice."""
import pytest
from google.appengine.ext import db

from lovely_gae import async_, entities
from lovely_gae.snapshot import api
from lovely_gae.snapshot.work import passes, ranges, shards
from tests.conftest import Dummy


class Crash(Exception):
    pass


def put_named(numbers):
    db.put([Dummy(key_name='k%04d' % number, title=str(number))
            for number in numbers])


def assert_covered_once(snap, kind, must_hold):
    """The kind's ranges follow each other with neither gap nor overlap,
    from its first key to its last, and hold each of ``must_hold``."""
    backups = sorted(snap.range_backups(kind), key=lambda b: b.position)
    assert backups[0].start is None and backups[-1].end is None
    for before, after in zip(backups, backups[1:]):
        assert before.end == after.start, (before.position, after.position)
    assert sum(b.count for b in backups) == snap.kind_entities[kind]
    held = set()
    for backup in backups:
        held.update(entities.key(entities.EntityProto.FromString(record).key)
                    for record in backup.iter_records())
    assert len(held) == snap.kind_entities[kind]
    assert {db.Key.from_path('Dummy', 'k%04d' % n) for n in must_hold} <= held


def crash_once(monkeypatch, module, name, after_calls):
    """``module.name`` raises ``Crash`` once, after ``after_calls`` calls
    have done their work."""
    original, calls = getattr(module, name), []

    def crashing(*args, **kwargs):
        result = original(*args, **kwargs)
        calls.append(1)
        if len(calls) == after_calls:
            raise Crash()
        return result
    monkeypatch.setattr(module, name, crashing)


def test_a_pass_run_again_over_changed_keys_keeps_the_chunks_it_handed_on(
        gae_testbed, run_tasks, monkeypatch, unsharded, fast_retries):
    monkeypatch.setattr(passes, 'CHUNK', 2)
    monkeypatch.setattr(ranges, 'PER_TASK', 2)
    put_named(range(0, 400, 10))  # 40 entities: 8 ranges of 5, 4 chunks
    crash_once(monkeypatch, passes, '_hand_on', after_calls=2)
    snap = api.create_snapshot(['Dummy'], batchsize=5)
    run_tasks()  # the pass hands two chunks on, then its worker dies
    put_named(range(1, 100, 10))  # keys among the first chunks' ranges
    run_tasks(recursive=True)
    snap = api.get_snapshot(snap.id)
    assert snap.status == 'finished'
    assert_covered_once(snap, 'Dummy', range(0, 400, 10))


def test_a_kind_cut_again_keeps_its_first_cut_and_the_parts_committed(
        gae_testbed, run_tasks, monkeypatch, fast_retries, sharded):
    # Cut by its first task, as the kinds of a snapshot of many kinds are.
    monkeypatch.setattr(passes, 'sample_kinds', lambda kinds, namespace: dict)
    put_named(range(0, 2000, 10))  # 200 entities
    cuts = iter([None, [None, db.Key.from_path('Dummy', 'k1005')]])
    original = passes.shard_starts

    def shifting(kind, namespace):  # the second cut falls elsewhere
        return next(cuts) or original(kind, namespace)
    monkeypatch.setattr(passes, 'shard_starts', shifting)
    monkeypatch.setattr(ranges, 'PER_TASK', 2)
    crash_once(monkeypatch, shards, '_store_part', after_calls=1)
    snap = api.create_snapshot(['Dummy'], batchsize=7)
    run_tasks()  # shard 0 commits a part of the first cut; the worker dies
    put_named(range(1, 100, 10))  # keys among that part's ranges
    run_tasks(recursive=True)
    snap = api.get_snapshot(snap.id)
    assert snap.status == 'finished'
    assert len(snap.range_counts['Dummy']) == 4
    assert_covered_once(snap, 'Dummy', range(0, 2000, 10))


@pytest.mark.parametrize('first_tasks, queued', [
    (23, ['store_shard'] * 4),  # its shards commit with the snapshot
    (3, ['start_kind'])])       # too many: a task of the kind queues them
def test_a_kind_cut_as_its_snapshot_is_created_keeps_that_cut(
        gae_testbed, run_tasks, monkeypatch, fast_retries, sharded,
        first_tasks, queued):
    monkeypatch.setattr(passes, '_FIRST_KINDS', first_tasks)
    put_named(range(0, 2000, 10))  # 200 entities
    sampled = []
    original = passes.shard_starts

    def counted(*args):
        sampled.append(args[0])
        return original(*args)
    monkeypatch.setattr(passes, 'shard_starts', counted)
    monkeypatch.setattr(ranges, 'PER_TASK', 2)
    crash_once(monkeypatch, shards, '_store_part', after_calls=1)
    snap = api.create_snapshot(['Dummy'], batchsize=7)
    assert sampled == ['Dummy'] and snap.status == 'storing'
    assert [task.func.split(':')[1]
            for task in async_.get_tasks()] == queued
    run_tasks()  # shard 0 commits a part; the worker dies
    put_named(range(1, 100, 10))  # keys among that part's ranges
    run_tasks(recursive=True)
    snap = api.get_snapshot(snap.id)
    assert snap.status == 'finished' and sampled == ['Dummy']  # once
    assert len(snap.range_counts['Dummy']) == 4
    assert_covered_once(snap, 'Dummy', range(0, 2000, 10))
