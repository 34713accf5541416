"""A large kind's shards: each stored by a task that reads its entities once.

A shard's task reads its entities in key order, with one query that runs
batch by batch, and cuts them into ranges of ``batchsize`` entities as it
goes: a range ends at the key of the entity after its last (the shard's
end after its last range), the next starts there. Every ``ranges.PER_TASK``
ranges it commits, as one part of the shard's job, with their starts (a
``SnapshotMarkers``, the seed's markers) and the part's marker, which says
the part is in and what it holds: no pass over the keys comes first, no
range is read twice.

The shard counts itself: it adds up its parts as it commits them, and the
commit of its last part counts the whole shard in its kind (the shard's
marker in the kind's job), so no task comes after to count its parts.

A task works ``defaults.PASS_SECONDS``, then goes on in a task of its own
from where its last commit ended, with the counts so far. A task that runs
again over data that changed in between keeps what the first run committed:
where it finds a part committed already, it counts that part as its marker
says and goes on from where that part ended.
"""
import itertools
import time
import uuid

from ... import async_, completion, defaults, entities
from ...base import get_all
from . import ranges
from ..markers import ShardProgress, SnapshotMarkers
from ..models import SHARD_STRIDE, Snapshot

__all__ = ['shard_task', 'store_shard', 'Reader', 'store']


def shard_task(snapshot_id, kind_index, kind, namespace, shard, shards,
               start, end, index=0, part=0, counts=None):
    """The task that stores a shard of ``kind`` from ``start`` (range
    ``index`` of it, the first of commit ``part``, after parts that hold
    ``counts``) up to ``end``."""
    return async_.make_task(
        store_shard, args=(snapshot_id, kind_index, kind, namespace, shard,
                           shards, start, end, index, part,
                           counts or _NOTHING),
        on_failure=ranges.snapshot_failed, on_failure_args=(snapshot_id,))


_NOTHING = {'ranges': 0, 'entities': 0, 'bytes': 0}
_UNREAD = object()


class Reader:
    """A shard's entities from ``start`` in key order, one query that runs
    batch by batch (sent at once); ``following`` is the next one, None at
    the end."""

    def __init__(self, kind, namespace, start, end):
        self.kind, self.namespace, self.start = kind, namespace, start
        self._found = entities.iter_range(
            kind, namespace, start, end,
            max_batch_bytes=defaults.PART_SIZE // 2)
        self._following = _UNREAD

    @property
    def following(self):
        if self._following is _UNREAD:  # read when first asked for
            self._following = next(self._found, None)
        return self._following

    def take(self, count):
        """Yield up to ``count`` entities; ``following`` moves past them."""
        if self.following is None:
            return
        yield self.following
        yield from itertools.islice(self._found, count - 1)
        self._following = _UNREAD


@async_.task
def store_shard(snapshot_id, kind_index, kind, namespace, shard, shards,
                start, end, index, part, counts):
    """Task: store a shard's ranges, ``ranges.PER_TASK`` a commit."""
    # The query is on its way while the snapshot is read.
    reader = Reader(kind, namespace, start, end)
    snap = Snapshot.get_by_id(snapshot_id)
    if snap is None or snap.status == Snapshot.STATUS_ERROR:
        return
    store(snap, kind_index, shard, shards, reader, end, index, part, counts)


def store(snap, kind_index, shard, shards, reader, end, index=0, part=0,
          counts=None):
    """Store a shard from ``reader``'s start, as ``store_shard`` does."""
    job = ranges.job(snap.id, kind_index, shard)
    counts = dict(counts or _NOTHING)
    stop_at = time.monotonic() + defaults.PASS_SECONDS
    while True:
        stored_part = _store_part(snap, kind_index, job, shard, reader, end,
                                  index, part, counts)
        if stored_part is None:
            return
        after, index, counts = stored_part
        part += 1
        if after == end:
            ranges.kind_stored(snap.id, kind_index, shard, shards,
                               len(snap.kinds))
            return
        if time.monotonic() >= stop_at:
            async_.defer_many([shard_task(
                snap.id, kind_index, reader.kind, reader.namespace, shard,
                shards, after, end, index, part, counts)])
            return
        if after != reader.start:  # another run's part: on from its end
            reader = Reader(reader.kind, reader.namespace, after, end)


def _store_part(snap, kind_index, job, shard, reader, end, index, part,
                counts):
    """Read and commit up to ``ranges.PER_TASK`` ranges, the first range
    ``index`` of the shard, as part ``part`` of its job, after parts that
    hold ``counts``; the last part counts the shard in its kind. Returns
    where the next range starts, its index and the shard's counts with
    this part, as the part committed says (None if the snapshot is gone).
    """
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
    total = completion.add_up([counts, ranges.tally(backups)])
    also = [markers, ShardProgress.build(snap.id, kind, shard,
                                         index + len(backups))]
    if stop == end:
        also.append(ranges.shard_marker(snap.id, kind_index, shard, total))
    if ranges.commit(job, part, backups, written, also=also):
        return stop, index + len(backups), total
    kept, done = get_all([markers.key(), completion.key(job, part)])
    if kept is None or done is None:
        return None
    return (kept.after, kept.first + len(kept.all_starts()),
            completion.add_up([counts, done.tally]))

