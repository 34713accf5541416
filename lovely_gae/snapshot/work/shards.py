"""A large kind's shards: each stored by a task that reads its entities once.

A shard's task reads its entities in key order, with one query that runs
batch by batch, and cuts them into ranges of ``batchsize`` entities as it
goes: a range ends at the key of the entity after its last (the shard's
end after its last range), the next starts there. Every ``ranges.PER_TASK``
ranges it commits, as one part of the shard's ``completion`` job, with
their starts (a ``SnapshotMarkers``, the seed's markers): no pass over the
keys comes first, no range is read twice.

A task works ``defaults.PASS_SECONDS``, then goes on in a task of its own
from where its last commit ended. A task that runs again over data that
changed in between keeps what the first run committed: where it finds a
part committed already, it goes on from where that part ended.
"""
import itertools
import time
import uuid

from ... import async_, completion, defaults, entities
from . import ranges
from ..markers import SnapshotMarkers
from ..models import SHARD_STRIDE, Snapshot

__all__ = ['shard_task', 'store_shard']


def shard_task(snapshot_id, kind_index, shard, shards, start, end, index=0,
               part=0):
    """The task that stores a shard from ``start`` (range ``index`` of it,
    the first of commit ``part``) up to ``end``."""
    return async_.make_task(
        store_shard, args=(snapshot_id, kind_index, shard, shards, start, end,
                           index, part),
        on_failure=ranges.snapshot_failed, on_failure_args=(snapshot_id,))


class _Reader:
    """A shard's entities from ``start`` in key order, one query that runs
    batch by batch; ``following`` is the next one, None at the end."""

    def __init__(self, kind, namespace, start, end):
        self.kind, self.start = kind, start
        self._found = entities.iter_range(
            kind, namespace, start, end,
            max_batch_bytes=defaults.PART_SIZE // 2)
        self.following = next(self._found, None)

    def take(self, count):
        """Yield up to ``count`` entities; ``following`` moves past them."""
        if self.following is None:
            return
        yield self.following
        yield from itertools.islice(self._found, count - 1)
        self.following = next(self._found, None)


@async_.task
def store_shard(snapshot_id, kind_index, shard, shards, start, end, index=0,
                part=0):
    """Task: store a shard's ranges, ``ranges.PER_TASK`` a commit."""
    snap = Snapshot.get_by_id(snapshot_id)
    if snap is None or snap.status == Snapshot.STATUS_ERROR:
        return
    kind, job = snap.kinds[kind_index], ranges.job(snapshot_id, kind_index,
                                                   shard)
    stop_at = time.monotonic() + defaults.PASS_SECONDS
    reader = _Reader(kind, snap.namespace, start, end)
    while True:
        stored_part = _store_part(snap, job, shard, reader, end, index, part)
        if stored_part is None:
            return
        after, index = stored_part
        stored = completion.ascend(job, part)
        if stored is not None:
            ranges.shard_stored(snapshot_id, kind_index, shard, shards,
                                stored)
        part += 1
        if after == end:
            ranges.shard_done(snapshot_id, kind_index, shard, shards, part)
            return
        if time.monotonic() >= stop_at:
            async_.defer_many([shard_task(snapshot_id, kind_index, shard,
                                          shards, after, end, index, part)])
            return
        if after != reader.start:  # another run's part: on from its end
            reader = _Reader(kind, snap.namespace, after, end)


def _store_part(snap, job, shard, reader, end, index, part):
    """Read and commit up to ``ranges.PER_TASK`` ranges, the first range
    ``index`` of the shard, as part ``part`` of its job. Returns where the
    next range starts and its index, as the part committed says (None if
    the snapshot is gone)."""
    kind, token = reader.kind, uuid.uuid4().hex[:12]
    backups, written, starts = [], [], []
    stop = reader.start
    while len(backups) < ranges.PER_TASK:
        starts.append(stop)
        backup, parts = ranges.write(
            snap.id, kind, snap.codec,
            shard * SHARD_STRIDE + index + len(backups), stop, None, token,
            (entity.SerializeToString()
             for entity in reader.take(snap.batchsize)))
        following = reader.following
        stop = end if following is None else entities.key(following.key)
        backup.end = stop
        backups.append(backup)
        written.extend(parts)
        if following is None:
            break
    reader.start = stop
    markers = SnapshotMarkers.build(snap.id, kind, shard, part, index, starts,
                                    stop)
    if ranges.commit(job, part, backups, written, also=[markers]):
        return stop, index + len(backups)
    kept = SnapshotMarkers.get_by_key_name(markers.key().name())
    if kept is None:
        return None
    return kept.after, kept.first + len(kept.all_starts())
