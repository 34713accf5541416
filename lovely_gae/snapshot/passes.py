"""A snapshot's key passes: where each range of a kind starts.

A range is ``batchsize`` entities in key order; it starts at the key of its
first entity (the seed's markers are these starts, but the first). A pass
reads keys only and hands its ranges on, ``ranges.CHUNK`` at a time, to
``ranges.markers_ready``, which queues the tasks that read them, all at
once.

A kind's first pass starts at its first key. Once it has found
``SHARD_MIN`` ranges, the rest of the kind is cut into shards at keys the
datastore samples at random (``__scatter__``, as the SDK's ``key_range``
finds split points), each passed over by a task of its own, all at once,
while the first pass goes on with the first shard. Shard ``s`` numbers its
ranges from ``s * models.SHARD_STRIDE`` on. A small kind stays one shard,
whose ranges are handed on through a task of their own, as the seed's
doctest counts them.

A pass works ``defaults.PASS_SECONDS`` a task, then goes on in a task of
its own from where a range starts. At its end it closes its shard's
``completion`` job with the number of range tasks it made.
"""
import time

from google.appengine.api import datastore

from .. import async_, defaults, entities
from . import ranges
from .models import Snapshot

__all__ = ['SHARD_MIN', 'SHARDS', 'pass_kind', 'pass_shard']

#: Ranges a kind's first pass finds before it cuts the rest into shards.
SHARD_MIN = 10
#: Shards a kind is cut into at most.
SHARDS = 32
#: Random keys sampled per shard: shards start at evenly spaced ones.
OVERSAMPLE = 4
#: Keys a pass reads per query batch.
_KEYS_BATCH = 1000


def _live(snapshot_id):
    snap = Snapshot.get_by_id(snapshot_id)
    if snap is None or snap.status == Snapshot.STATUS_ERROR:
        return None
    return snap


def _splits(kind, namespace, after):
    """Where shards start beyond the key ``after``: keys the datastore
    samples at random (``__scatter__``), evenly spaced; none if too few."""
    sample = datastore.Query(kind, namespace=namespace, keys_only=True)
    sample.Order('__scatter__')
    floor = entities.sort_key(after._ToPb())
    found = sorted((key for key in sample.Get(SHARDS * OVERSAMPLE)
                    if entities.sort_key(key._ToPb()) > floor),
                   key=lambda key: entities.sort_key(key._ToPb()))
    shards = min(SHARDS, len(found) // OVERSAMPLE + 1)
    splits = []
    for shard in range(1, shards):
        key = found[shard * len(found) // shards]
        if not splits or key != splits[-1]:
            splits.append(key)
    return splits


#: Kinds whose passes are queued with their snapshot, in the transaction that
#: stores it (25 entity groups: the snapshot's, and each task's).
_FIRST_KINDS = 23
#: Pass tasks a fan-out task queues, with the next fan-out task.
_FAN_OUT = 100


def first_tasks(snapshot_id, kinds):
    """The tasks that start a snapshot of ``kinds`` kinds: a pass a kind,
    or for many kinds one that queues them a page at a time."""
    if kinds <= _FIRST_KINDS:
        return [_pass_task(snapshot_id, index) for index in range(kinds)]
    return [async_.make_task(pass_kinds, args=(snapshot_id, kinds, 0),
                             on_failure=ranges.snapshot_failed,
                             on_failure_args=(snapshot_id,))]


def _pass_task(snapshot_id, kind_index):
    return async_.make_task(pass_kind, args=(snapshot_id, kind_index),
                            on_failure=ranges.snapshot_failed,
                            on_failure_args=(snapshot_id,))


@async_.task
def pass_kinds(snapshot_id, kinds, first):
    """Task: queue the passes of kinds ``first`` on, a page of them, and
    the task that queues the next page."""
    last = min(kinds, first + _FAN_OUT)
    tasks = [_pass_task(snapshot_id, index) for index in range(first, last)]
    if last < kinds:
        tasks.append(async_.make_task(
            pass_kinds, args=(snapshot_id, kinds, last),
            on_failure=ranges.snapshot_failed, on_failure_args=(snapshot_id,)))
    async_.defer_many(tasks)


@async_.task
def pass_kind(snapshot_id, kind_index):
    """Task: pass over a kind's keys, splitting a large kind into shards."""
    snap = _live(snapshot_id)
    if snap is None:
        return
    if snap.status == Snapshot.STATUS_STARTED:  # once a kind, at most
        ranges.mark_storing(snapshot_id)
    _pass(snap, kind_index, 0, None, None, None, 0, 0)


@async_.task
def pass_shard(snapshot_id, kind_index, shard, shards, start, end,
               index=0, chunk=0):
    """Task: pass over the keys of a shard, from range ``index`` of it on,
    which starts at ``start`` (None: the kind's first key)."""
    snap = _live(snapshot_id)
    if snap is not None:
        _pass(snap, kind_index, shard, shards, start, end, index, chunk)


def _shard_task(snap, kind_index, shard, shards, start, end, index=0,
                chunk=0):
    return async_.make_task(pass_shard, args=(
        snap.id, kind_index, shard, shards, start, end, index, chunk),
        on_failure=ranges.snapshot_failed, on_failure_args=(snap.id,))


def _pass(snap, kind_index, shard, shards, start, end, index, chunk):
    """Pass over keys from ``start`` (the first of range ``index``) to
    ``end``, handing ranges on a chunk at a time.

    ``shards`` is None in the kind's first pass while the kind may still
    turn out large: once it holds ``SHARD_MIN`` ranges, the rest of the
    kind is cut into shards passed over by tasks of their own, and this
    pass goes on as the first.
    """
    kind, size = snap.kinds[kind_index], ranges.CHUNK
    stop_at = time.monotonic() + defaults.PASS_SECONDS
    starts, count, read_from = [start], 0, start
    while True:
        cut = False
        for reference in entities.iter_range_keys(
                kind, snap.namespace, read_from, end, batch_size=_KEYS_BATCH):
            if count == snap.batchsize:
                key = entities.key(reference)
                starts.append(key)
                count = 0
                if shards is None and len(starts) > SHARD_MIN:
                    splits = _splits(kind, snap.namespace, key)
                    shards = len(splits) + 1
                    if splits:
                        bounds = list(zip(splits, splits[1:] + [end]))
                        async_.defer_many([
                            _shard_task(snap, kind_index, number, shards,
                                        low, high)
                            for number, (low, high) in enumerate(bounds, 1)])
                        end, read_from, cut = splits[0], key, True
                        break  # and read on from ``key``, up to the new end
                if len(starts) > size:  # a chunk, and where the next begins
                    ranges.hand_on(snap, kind_index, shard, shards or 1,
                                   chunk, index, starts[:size], starts[size])
                    chunk, index, starts = (chunk + 1, index + size,
                                            starts[size:])
                    if time.monotonic() >= stop_at:
                        async_.defer_many([_shard_task(
                            snap, kind_index, shard, shards or 1, starts[0],
                            end, index, chunk)])
                        return
            count += 1
        if not cut:
            break
    shards = shards or 1
    ranges.hand_on(snap, kind_index, shard, shards, chunk, index, starts, end)
    per = ranges.per_task(shards)
    tasks = chunk * (size // per) + -(-len(starts) // per)
    ranges.shard_passed(snap, kind_index, shard, shards, tasks)
