"""The tasks that store a snapshot's ranges, and that purge a deleted one.

A key pass (``passes``) hands ranges on in chunks: ``markers_ready`` keeps
a chunk's first keys (the seed's markers) and queues the tasks that read
the ranges, each with a range query of its own, so that they all read at
once: one range a task for a small kind (as the seed counts them),
``PER_TASK`` for a large one, whose calls they share.

A range task writes its backups' further parts first, then commits its
backups in one transaction with its own ``completion`` marker: if the
marker is there, another run of the task has committed already, and this
run's parts go. Nothing every task writes, no contention. The task that
completes a shard completes it in the kind's job; the kind's last shard in
the snapshot's job; the last kind finishes the snapshot with the totals.
Every task here may run twice, or in two workers at once.
"""
import uuid

from google.appengine.ext import db

from .. import async_, completion, defaults, entities
from ..base import delete_all, prefixed, put_all, retrying, transaction
from .models import (SHARD_STRIDE, RangeBackup, RangeBackupPart, Snapshot,
                     SnapshotMarkers)
from .storage import RangeWriter

__all__ = ['PER_TASK', 'CHUNK', 'per_task', 'mark_storing', 'hand_on',
           'markers_ready',
           'store_ranges', 'shard_passed', 'snapshot_failed',
           'delete_snapshot', 'purge_snapshot']

#: Ranges one task of a large kind reads: its calls are shared.
PER_TASK = 5
#: Ranges a pass hands on at a time (a multiple of ``PER_TASK``): range
#: task ``i`` of chunk ``c`` is task ``c * CHUNK / per_task + i`` of its
#: shard.
CHUNK = 50
#: Keys deleted per datastore call when purging a snapshot.
_PURGE_BATCH = 500
#: Purge calls made in the caller's request before the rest goes to a task.
_PURGE_INLINE = 20


def per_task(shards):
    """Ranges a task reads: one for a small kind, of one shard."""
    return 1 if shards == 1 else PER_TASK


def _job(snapshot_id, kind_index=None, shard=None):
    """The ``completion`` job of a snapshot, of one of its kinds, or of a
    shard of one."""
    parts = ['S', str(snapshot_id)]
    if kind_index is not None:
        parts.append(str(kind_index))
    if shard is not None:
        parts.append('%04d' % shard)
    return ':'.join(parts)


@async_.task
def snapshot_failed(message, snapshot_id):
    """``on_failure`` of a snapshot's tasks: the snapshot goes to ERROR."""
    def fail():
        snap = Snapshot.get_by_id(snapshot_id)
        if snap is not None and snap.status != Snapshot.STATUS_FINISHED:
            snap.status = Snapshot.STATUS_ERROR
            snap.error = message
            snap.put()
    transaction(fail)


def hand_on(snap, kind_index, shard, shards, chunk, index, starts, end):
    """Hand a chunk of ranges on: a small kind's in a task of their own (the
    seed's callback), a shard's at once."""
    args = (snap.id, kind_index, shard, shards, chunk, index, starts, end)
    if shards == 1:
        async_.defer(markers_ready, args=args, on_failure=snapshot_failed,
                     on_failure_args=(snap.id,))
    else:
        markers_ready(*args)


@async_.task
def markers_ready(snapshot_id, kind_index, shard, shards, chunk, index,
                  starts, end):
    """Keep a chunk's first keys; queue the tasks that read its ranges.

    Its ranges are ``index`` on of the shard: range ``index + i`` runs from
    ``starts[i]`` up to the next start, the last up to ``end``.
    """
    snap = Snapshot.get_by_id(snapshot_id)
    if snap is None or snap.status == Snapshot.STATUS_ERROR:
        return
    kind = snap.kinds[kind_index]
    first = shard * SHARD_STRIDE + index
    put_all([SnapshotMarkers.build(snapshot_id, kind, shard, chunk, first,
                                   starts)])
    bounds = list(zip(starts, starts[1:] + [end]))
    per = per_task(shards)
    leaf = chunk * (CHUNK // per)
    async_.defer_many(async_.make_task(
        store_ranges, args=(snapshot_id, kind_index, kind, snap.namespace,
                            snap.codec, shard, shards, leaf + offset // per, [
                                (first + offset + i, start, stop)
                                for i, (start, stop) in enumerate(
                                    bounds[offset:offset + per])]),
        on_failure=snapshot_failed, on_failure_args=(snapshot_id,))
        for offset in range(0, len(bounds), per))


def mark_storing(snapshot_id):
    """The snapshot is ``storing`` once its first kind's pass has begun."""
    def storing():
        snap = Snapshot.get_by_id(snapshot_id)
        if snap is not None and snap.status == Snapshot.STATUS_STARTED:
            snap.status = Snapshot.STATUS_STORING
            snap.put()
    transaction(storing)


def _write(snapshot_id, kind, namespace, codec, position, start, end, token):
    """Read a range and compress it; store every part but the first.

    Returns ``(unsaved RangeBackup, keys of the parts written)``.
    """
    writer = RangeWriter(codec)
    first, written = [], []

    def emit(parts):
        for part in parts:
            if not first:
                first.append(part)
                continue
            key = RangeBackupPart.key_of(snapshot_id, kind, position, token,
                                         len(written) + 1)
            retrying(db.put, RangeBackupPart(key=key, data=part))
            written.append(key)
    records = (entity.SerializeToString() for entity in entities.iter_range(
        kind, namespace, start, end,
        max_batch_bytes=defaults.PART_SIZE // 2))
    emit(writer.add_all(records))
    emit(writer.close())
    backup = RangeBackup(
        key_name=RangeBackup.make_name(snapshot_id, kind, position,
                                       writer.size),
        snapshot=Snapshot.key_for(snapshot_id), range_kind=kind,
        position=position, start=start, end=end, count=writer.count,
        raw_size=writer.raw_size, size=writer.size, sha256=writer.sha256,
        codec=writer.codec, parts=len(written) + 1,
        part_size=writer.part_size, token=token,
        data=first[0] if first else b'')
    return backup, written


@async_.task
def store_ranges(snapshot_id, kind_index, kind, namespace, codec, shard,
                 shards, index, bounds):
    """Task: store the ranges ``bounds`` (``[(position, start, end), ...]``)
    as task ``index`` of a shard; safe to repeat."""
    token = uuid.uuid4().hex[:12]
    backups, written = [], []
    for position, start, end in bounds:
        backup, parts = _write(snapshot_id, kind, namespace, codec, position,
                               start, end, token)
        backups.append(backup)
        written.extend(parts)
    job = _job(snapshot_id, kind_index, shard)
    counts = {'ranges': len(backups),
              'entities': sum(backup.count for backup in backups),
              'bytes': sum(backup.size for backup in backups)}
    if not transaction(_commit, job, index, backups, counts):
        delete_all(written)  # another run committed, or the snapshot went
    stored = completion.ascend(job, index)
    if stored is not None:
        _shard_stored(snapshot_id, kind_index, shard, shards, stored)


def _commit(job, index, backups, counts):
    """Commit the backups with the task's marker, unless it has one; the
    task's own entity goes with them. Nothing else is read: a transaction
    that read what every task reads would collide with theirs."""
    marker = completion.marker(job, index, counts)
    if db.get(marker.key()) is not None:
        return False
    db.put(backups + [marker])
    async_.done_with_current()
    return True


def shard_passed(snap, kind_index, shard, shards, tasks):
    """A shard's pass has ended with ``tasks`` range tasks."""
    stored = completion.close(_job(snap.id, kind_index, shard), tasks)
    if stored is not None:
        _shard_stored(snap.id, kind_index, shard, shards, stored)


def _shard_stored(snapshot_id, kind_index, shard, shards, counts):
    """Every range of a shard is stored: count it in its kind."""
    counts = dict(counts, **{'shard:%d' % shard: counts['ranges']})
    stored = completion.mark(_job(snapshot_id, kind_index), shard, counts,
                             shards)
    if stored is None:
        return
    kinds = len(Snapshot.get_by_id(snapshot_id).kinds)
    prefixed_counts = {'%d:%s' % (kind_index, name): value
                       for name, value in stored.items()}
    prefixed_counts.update(entities=stored['entities'], bytes=stored['bytes'])
    total = completion.mark(_job(snapshot_id), kind_index, prefixed_counts,
                            kinds)
    if total is not None:
        _finish(snapshot_id, total)


def _finish(snapshot_id, counts):
    """Record the totals; the snapshot is finished. Not in a transaction:
    the tasks that see the last range in at once write the same."""
    snap = Snapshot.get_by_id(snapshot_id)
    if snap is None or snap.status not in (Snapshot.STATUS_STARTED,
                                           Snapshot.STATUS_STORING):
        return
    snap.status = Snapshot.STATUS_FINISHED
    snap.entity_count = counts['entities']
    snap.stored_bytes = counts['bytes']
    snap.range_counts, snap.kind_entities = {}, {}
    for kind_index, kind in enumerate(snap.kinds):
        shards = sorted(int(name.rsplit(':', 1)[1]) for name in counts
                        if name.startswith('%d:shard:' % kind_index))
        snap.range_counts[kind] = [counts['%d:shard:%d' % (kind_index, s)]
                                   for s in shards]
        snap.kind_entities[kind] = counts['%d:entities' % kind_index]
    snap.put()


def delete_snapshot(snap, ended=True):
    """Delete ``snap`` with its stored ranges; a task finishes large ones.

    If it had not ``ended`` (finished), a task of it may still be running:
    a last purge comes once such a task's lease would have run out.
    """
    snapshot_id = snap.id

    def handover(rest):
        db.delete(snap.key())
        if rest:
            async_.defer(purge_snapshot, args=(snapshot_id,))
        if not ended:
            async_.defer(purge_snapshot, args=(snapshot_id,), once_only=False,
                         countdown=defaults.LEASE_SECONDS)
    transaction(handover, not _purge(snapshot_id, _PURGE_INLINE))


@async_.task
def purge_snapshot(snapshot_id):
    """Task: delete what is left of a deleted snapshot, batch by batch."""
    if not _purge(snapshot_id, _PURGE_INLINE):
        async_.defer(purge_snapshot, args=(snapshot_id,), once_only=False)


def _purge(snapshot_id, max_batches):
    """Delete up to ``max_batches`` batches; True once nothing is left."""
    prefixes = ((RangeBackup, 'RB:%d:' % snapshot_id),
                (RangeBackupPart, 'RBP:%d:' % snapshot_id),
                (SnapshotMarkers, 'SM:%d:' % snapshot_id),
                (completion.Done, _job(snapshot_id) + ':'))
    for _ in range(max_batches):
        keys = []
        for model, prefix in prefixes:
            for key in prefixed(model, prefix, keys_only=True):
                keys.append(key)
                if len(keys) >= _PURGE_BATCH:
                    break
            if len(keys) >= _PURGE_BATCH:
                break
        if not keys:
            return True
        delete_all(keys)
    return False
