"""Storing a snapshot's ranges, knowing when it is done, and purging one.

The range tasks of a small kind's key pass (``passes``) each read their
ranges, with a query of their own that are all on their way at once, and
compress them (``write``). A task writes its backups' further parts first,
then commits its backups in one transaction with its own ``completion``
marker: if the marker is there, another run of the task has committed
already, and this run's parts go. A large kind's shard tasks (``shards``)
commit the same way, ``PER_TASK`` ranges at a time.

Nothing every task writes, no contention: the task that completes a shard
counts it in the kind's job (a large kind's shard, in the commit of its
last ranges: ``shards``); the kind's last shard counts the kind in the
snapshot's job, or finishes a snapshot of one kind; the last kind finishes
the snapshot with the totals. Every task here may run twice, or in two
workers at once.
"""
import itertools
import uuid

from google.appengine.ext import db

from ... import async_, completion, defaults, entities
from ...base import delete_all, prefixed, put_all, retrying, transaction
from .. import names
from ..markers import KindShards, ShardProgress, SnapshotMarkers
from ..models import RangeBackup, RangeBackupPart, Snapshot
from ..restores import Restore
from ..storage import RangeWriter

__all__ = ['PER_TASK', 'job', 'write', 'store_ranges', 'gone', 'tally',
           'commit', 'shard_done', 'shard_marker', 'shard_stored',
           'kind_stored', 'snapshot_failed', 'delete_snapshot',
           'purge_snapshot']

#: Ranges a task stores at most, whose calls they share, and that commit
#: together: their first parts (``defaults.PART_SIZE`` each at most) stay
#: within ``defaults.MAX_TRANSACTION_BYTES``.
PER_TASK = 10
#: Bytes of first query batches a range task waits for at once, at most,
#: by the largest mean entity size it has seen.
_IN_FLIGHT_BYTES = 4 * 1024 * 1024
#: Keys deleted per datastore call when purging a snapshot.
_PURGE_BATCH = defaults.MAX_REQUEST_ENTITIES
#: Purge calls made in the caller's request, and then in each purge task,
#: before the rest goes to a (further) task.
_PURGE_INLINE = 20
#: Seconds a deleted snapshot's last purge waits for a task of it (or of
#: a restore of it) still in flight: None, a task's lease
#: (``defaults.LEASE_SECONDS``). A local datastore file is one process's
#: alone, with nothing in flight elsewhere: 0 (``local``).
LAST_PURGE_SECONDS = None


job = names.snapshot_job


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


def write(snapshot_id, kind, codec, position, start, end, token, records):
    """Compress a range's ``records`` (encoded entities); store every part
    but the first.

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


def _sent(kind, namespace, bounds):
    """Yield ``(bound, its query on its way)``: once the first range has
    shown how large the kind's entities are, the next ranges' queries are
    sent together, as many as ``_IN_FLIGHT_BYTES`` of first batches allow,
    so that the task waits for their answers once, not once a range."""
    bounds, in_flight, mean = list(bounds), [], None
    batch_bytes = defaults.PART_SIZE // 2
    while bounds or in_flight:
        window = 1 if mean is None else max(1, _IN_FLIGHT_BYTES // (
            entities.first_batch(batch_bytes) * mean))
        while bounds and len(in_flight) < window:
            _, start, end = bound = bounds.pop(0)
            in_flight.append((bound, entities.send_range(
                kind, namespace, start, end, max_batch_bytes=batch_bytes)))
        bound, query = in_flight.pop(0)
        yield bound, query
        mean = max(mean or 1, query.mean_bytes or 1)


@async_.task
def store_ranges(snapshot_id, kind_index, kind, namespace, codec, shard,
                 shards, index, bounds):
    """Task: store the ranges ``bounds`` (``[(position, start, end), ...]``)
    as task ``index`` of a shard; safe to repeat."""
    token = uuid.uuid4().hex[:12]
    backups, written = [], []
    for (position, start, end), query in _sent(kind, namespace, bounds):
        backup, parts = write(
            snapshot_id, kind, codec, position, start, end, token,
            (entity.SerializeToString()
             for entity in entities.read_range(query)))
        backups.append(backup)
        written.extend(parts)
    task_job = job(snapshot_id, kind_index, shard)
    commit(task_job, index, backups, written)
    snap = db.get_async(Snapshot.key_for(snapshot_id))  # with the ascent
    # Even if another run committed: it may have died before this.
    stored = completion.ascend(task_job, index)
    if gone(snap.get_result()):
        purge_snapshot(snapshot_id)
    elif stored is not None:
        shard_stored(snapshot_id, kind_index, shard, shards, stored)


def gone(snap):
    """Whether a task that has committed (or stored) for a snapshot, read
    as ``snap`` since, is late: the snapshot is gone, or being deleted,
    and may have been purged since it was read, or before its commit.

    A range task comes at least once, and its retry may come after its
    snapshot's last purge (a finished snapshot has none after its delete:
    nothing of it runs). Reading the snapshot before its work would not
    do: the delete may come between. Read after its commit, it sees a
    delete that began before (``deleting``: the purge may be past what
    it wrote); one that begins after finds what it wrote in its purge. A
    late task purges it again (``purge_snapshot``): what it wrote goes,
    and what its ascent wrote, and what other late tasks wrote before.
    """
    return snap is None or snap.status == Snapshot.STATUS_DELETING


def tally(backups):
    """The counts a part of ``backups`` adds to its job."""
    return {'ranges': len(backups),
            'entities': sum(backup.count for backup in backups),
            'bytes': sum(backup.size for backup in backups)}


def commit(part_job, index, backups, written, also=()):
    """Commit ``backups`` (with ``also``) as part ``index`` of the job, with
    its marker, unless it has one; then the parts ``written`` of another
    run are gone. Returns whether they are committed now.

    Nothing else is read: a transaction that read what every task reads
    would collide with theirs. But a commit that raised (timed out) may
    have been applied all the same, and ``transaction`` tries again: a
    try after one that sent the put reads the first backup to see whose
    marker it finds (its parts are this run's, not to be deleted).
    """
    counts = tally(backups)
    sent = []

    def once():
        marker = completion.marker(part_job, index, counts)
        if db.get(marker.key()) is not None:
            return bool(sent and backups) and _landed(backups[0])
        sent.append(True)
        db.put(list(backups) + [marker] + list(also))
        return True
    if transaction(once):
        return True
    delete_all(written)  # another run committed, or the snapshot went
    return False


def _landed(backup):
    """Whether ``backup`` (unsaved) is the one stored: its run's."""
    stored = db.get(backup.key())
    return stored is not None and stored.token == backup.token


def shard_done(snapshot_id, kind_index, shard, shards, parts):
    """Every part of a shard's job has been handed out: ``parts`` range
    tasks (or commits)."""
    stored = completion.close(job(snapshot_id, kind_index, shard), parts)
    if stored is not None:
        shard_stored(snapshot_id, kind_index, shard, shards, stored)


def shard_marker(snapshot_id, kind_index, shard, counts):
    """The unsaved marker that counts a stored shard in its kind."""
    return completion.marker(job(snapshot_id, kind_index), shard, dict(
        counts, **{'shard:%d' % shard: counts['ranges']}))


def shard_stored(snapshot_id, kind_index, shard, shards, counts):
    """Every range of a shard is stored: count it in its kind."""
    put_all([shard_marker(snapshot_id, kind_index, shard, counts)])
    kind_stored(snapshot_id, kind_index, shard, shards, None)


def kind_stored(snapshot_id, kind_index, shard, shards, kinds):
    """A shard is counted in its kind (its marker stored): if that
    completes the kind, count the kind in the snapshot, which the last
    kind finishes. ``kinds``: the snapshot's number of kinds, if known
    (a snapshot of one kind is finished by its kind's total as it is)."""
    stored = completion.ascend(job(snapshot_id, kind_index), shard, shards,
                               completion.WIDEST)
    if stored is None:
        return
    if kinds is None:
        snap = Snapshot.get_by_id(snapshot_id)
        if snap is None:
            return
        kinds = len(snap.kinds)
    prefixed_counts = {'%d:%s' % (kind_index, name): value
                       for name, value in stored.items()}
    prefixed_counts.update(entities=stored['entities'], bytes=stored['bytes'])
    if kinds == 1:
        retrying(_finish, snapshot_id, prefixed_counts)
        return
    total = completion.mark(job(snapshot_id), kind_index, prefixed_counts,
                            kinds)
    if total is not None:
        retrying(_finish, snapshot_id, total)


def _finish(snapshot_id, counts):
    """Record the totals: the snapshot is finished. It is read here, once
    its last kind is counted, and each try reads it again: a copy of the
    last task that stalled (tasks run at least once) must not store an
    older read over what was stored since, a restore begun or a delete
    (a deleted snapshot back, ``finished``, its ranges purged). Not in a
    transaction: the tasks that see the last range in at once (a wave's
    worth, as shards end together) would collide on the one snapshot,
    and retry; what is left is a window of one round trip, between this
    read and its put."""
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


def delete_snapshot(snap, ended):
    """Delete ``snap`` with what is stored of it (``_stored``); a task
    finishes large ones.

    If it had not ``ended`` (finished, with no restore), a task of it or
    of a restore of it may still be running, and store what the purge
    deleted: a last purge comes once such a task's lease would have run
    out.
    """
    snapshot_id = snap.id

    def handover(rest):
        db.delete(snap.key())
        if rest:
            async_.defer(purge_snapshot, args=(snapshot_id,))
        if not ended:
            async_.defer(purge_snapshot, args=(snapshot_id,), once_only=False,
                         countdown=defaults.LEASE_SECONDS
                         if LAST_PURGE_SECONDS is None
                         else LAST_PURGE_SECONDS)
    transaction(handover, not _purge(snapshot_id))


@async_.task
def purge_snapshot(snapshot_id):
    """Task: delete what is left of a deleted snapshot, batch by batch."""
    if not _purge(snapshot_id):
        async_.defer(purge_snapshot, args=(snapshot_id,), once_only=False)


def _purge(snapshot_id):
    """Delete up to ``_PURGE_INLINE`` batches; True once nothing is left."""
    for _ in range(_PURGE_INLINE):
        keys = list(itertools.islice(_stored(snapshot_id), _PURGE_BATCH))
        if not keys:
            return True
        delete_all(keys)
    return False


def _stored(snapshot_id):
    """Yield the key of everything stored of a snapshot, a query at a
    time: its entities and markers, named by it; its restores (and dry
    runs) and their markers, also named by it. A late copy of a task of a
    restore that read its record before the snapshot went may store it
    again (``restore._finish``, ``plan._finish``), or its marker: the
    last purge finds both."""
    models = {names.RANGE: RangeBackup, names.PART: RangeBackupPart,
              names.MARKERS: SnapshotMarkers, names.SHARDS: KindShards,
              names.PROGRESS: ShardProgress}
    for tag in names.TAGS:
        yield from prefixed(models[tag], names.of_snapshot(tag, snapshot_id),
                            keys_only=True)
    for prefix in (job(snapshot_id), names.restore_job(snapshot_id)):
        yield from prefixed(completion.Done, prefix + ':', keys_only=True)
    yield from Restore.all(keys_only=True).filter(
        'snapshot_id =', snapshot_id).run(batch_size=defaults.QUERY_BATCH)
