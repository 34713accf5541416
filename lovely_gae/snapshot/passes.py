"""A snapshot's key passes: where each range of a kind starts.

A range is ``batchsize`` entities in key order; it starts at the key of its
first entity (the seed's markers are these starts, but the first). A pass
reads keys only and hands its ranges on, ``ranges.CHUNK`` at a time, to
``ranges.markers_ready``, which queues the tasks that read them, all at
once.

A kind of more than ``SHARD_MIN`` ranges is first cut into shards at keys
the datastore samples at random (``__scatter__``, as the SDK's
``key_range`` finds split points), and each shard's keys are passed over
by a task of its own, all at once. Shard ``s`` numbers its ranges from
``s * models.SHARD_STRIDE`` on. A smaller kind is one shard whose pass runs in the
kind's first task and hands its ranges on through a task of their own, as
the seed's doctest counts them.

A pass works ``defaults.PASS_SECONDS`` a task, then goes on in a task of
its own from where a range starts. At its end it closes its shard's
``completion`` job with the number of range tasks it made.
"""
import time

from google.appengine.api import datastore

from .. import async_, defaults, entities
from . import ranges
from .models import Snapshot

__all__ = ['SHARD_MIN', 'SHARDS', 'shard_starts', 'pass_kind', 'pass_shard']

#: Ranges a kind has at least before it is cut into shards.
SHARD_MIN = 50
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


def shard_starts(kind, namespace, batchsize):
    """``[None, first key of shard 1, ...]``: one shard for a small kind."""
    probe = datastore.Query(kind, namespace=namespace, keys_only=True)
    probe.Order('__key__')
    if not probe.Get(1, offset=SHARD_MIN * batchsize):
        return [None]
    sample = datastore.Query(kind, namespace=namespace, keys_only=True)
    sample.Order('__scatter__')
    found = sorted(sample.Get(SHARDS * OVERSAMPLE),
                   key=lambda key: entities.sort_key(key._ToPb()))
    shards = min(SHARDS, max(1, len(found) // OVERSAMPLE))
    starts = [None]
    for shard in range(1, shards):  # split at evenly spaced samples
        key = found[shard * len(found) // shards]
        if key != starts[-1]:
            starts.append(key)
    return starts


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
    """Task: find a kind's shards; pass over a small kind's keys here."""
    snap = _live(snapshot_id)
    if snap is None:
        return
    kind = snap.kinds[kind_index]
    starts = shard_starts(kind, snap.namespace, snap.batchsize)
    if len(starts) == 1:
        pass_shard(snapshot_id, kind_index, 0, 1, None, None)
        return
    bounds = list(zip(starts, starts[1:] + [None]))
    async_.defer_many([async_.make_task(
        pass_shard, args=(snapshot_id, kind_index, shard, len(starts),
                          start, end),
        on_failure=ranges.snapshot_failed, on_failure_args=(snapshot_id,))
        for shard, (start, end) in enumerate(bounds)])


@async_.task
def pass_shard(snapshot_id, kind_index, shard, shards, start, end,
               index=0, chunk=0):
    """Task: pass over the keys of a shard, from range ``index`` of it on,
    which starts at ``start`` (None: the kind's first key)."""
    snap = _live(snapshot_id)
    if snap is None:
        return
    kind = snap.kinds[kind_index]
    stop_at = time.monotonic() + defaults.PASS_SECONDS
    size = ranges.CHUNK
    starts, count = [start], 0
    for reference in entities.iter_range_keys(kind, snap.namespace, start,
                                              end, batch_size=_KEYS_BATCH):
        if count == snap.batchsize:
            starts.append(entities.key(reference))
            count = 0
            if len(starts) > size:  # a chunk, and where the next begins
                ranges.hand_on(snap, kind_index, shard, shards, chunk,
                               index, starts[:size], starts[size])
                chunk, index, starts = chunk + 1, index + size, starts[size:]
                if time.monotonic() >= stop_at:
                    async_.defer(pass_shard, args=(
                        snapshot_id, kind_index, shard, shards, starts[0],
                        end, index, chunk), on_failure=ranges.snapshot_failed,
                        on_failure_args=(snapshot_id,))
                    return
        count += 1
    ranges.hand_on(snap, kind_index, shard, shards, chunk, index, starts, end)
    per = ranges.per_task(shards)
    tasks = chunk * (size // per) + -(-len(starts) // per)
    ranges.shard_passed(snap, kind_index, shard, shards, tasks)
