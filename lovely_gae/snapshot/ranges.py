"""The tasks of a snapshot: store each range, restore each range, purge.

Every task here may run twice, or in two workers at once, and still leave
one result: a range is counted and its ``RangeBackup`` written in one
transaction with the snapshot, guarded by the range's bit in
``Snapshot.done``; the loser of a race deletes the parts it wrote.
"""
import collections
import logging
import uuid

from google.appengine.ext import db

from .. import async_, defaults, entities
from ..base import retrying, transaction, utcnow
from ..exceptions import InvalidInput, RangeCorrupted
from .models import RangeBackup, RangeBackupPart, Snapshot, prefixed
from .storage import RangeWriter

log = logging.getLogger(__name__)

#: Keys deleted per datastore call when purging a snapshot.
_PURGE_BATCH = 500
#: Purge calls made in the caller's request before the rest goes to a task.
_PURGE_INLINE = 20


def _snapshot(snapshot_id):
    return Snapshot.get_by_id(snapshot_id)


def snapshot_failed(message, snapshot_id):
    """``on_failure`` of a snapshot's tasks: the snapshot goes to ERROR."""
    def fail():
        snap = _snapshot(snapshot_id)
        if snap is not None and snap.status != Snapshot.STATUS_FINISHED:
            snap.status = Snapshot.STATUS_ERROR
            snap.error = message
            snap.put()
    transaction(fail)


def restore_failed(message, snapshot_id, restore_id):
    def fail():
        snap = _snapshot(snapshot_id)
        if snap is not None and snap.restore_id == restore_id:
            snap.restore_status = 'error'
            snap.restore_error = message
            snap.put()
    transaction(fail)


def markers_ready(snapshot_id, kind, markers):
    """Record a kind's markers (first ones win) and queue a task per range."""
    def record():
        snap = _snapshot(snapshot_id)
        if snap is None:
            return None
        if kind not in snap.markers:
            snap.markers[kind] = markers
            if snap.status == Snapshot.STATUS_STARTED:
                snap.status = Snapshot.STATUS_STORING
            snap.put()
        return snap
    snap = transaction(record)
    if snap is None or snap.status == Snapshot.STATUS_ERROR:
        return
    for position, (start, end) in enumerate(snap.ranges(kind)):
        async_.defer(store_range, args=(snapshot_id, kind, position, start, end),
                     on_failure=snapshot_failed, on_failure_args=(snapshot_id,))


def store_range(snapshot_id, kind, position, start, end):
    """Store the entities of one range; a no-op if it is stored already."""
    snap = _snapshot(snapshot_id)
    if (snap is None or snap.status == Snapshot.STATUS_ERROR
            or snap.is_done(kind, position)):
        return
    prefix = RangeBackup.prefix(snapshot_id, kind, position)
    token = uuid.uuid4().hex[:12]
    writer = RangeWriter(snap.codec)
    first = []
    written = []

    def emit(parts):
        for part in parts:
            if not first:
                first.append(part)
                continue
            name = RangeBackupPart.make_name(prefix[:-1], token,
                                             len(written) + 1)
            written.append(retrying(
                RangeBackupPart(key_name=name, data=part).put))

    for entity in entities.iter_range(kind, snap.namespace, start, end):
        emit(writer.add(entity.SerializeToString()))
    emit(writer.close())
    backup = RangeBackup(
        key_name=RangeBackup.make_name(snapshot_id, kind, position,
                                       writer.size),
        snapshot=snap.key(), range_kind=kind, position=position, start=start,
        end=end, count=writer.count, size=writer.size, sha256=writer.sha256,
        codec=writer.codec, parts=len(written) + 1, token=token,
        data=first[0] if first else b'')

    def commit():
        snap = _snapshot(snapshot_id)
        if snap is None or snap.is_done(kind, position):
            return False
        backup.put()
        snap.entity_count += writer.count
        snap.stored_bytes += writer.size
        if snap.mark_done(kind, position):
            snap.finished_kinds.append(kind)
            if set(snap.finished_kinds) >= set(snap.kinds):
                snap.status = Snapshot.STATUS_FINISHED
        snap.put()
        return True
    if not transaction(commit):
        retrying(db.delete, written)


def restore(snap, kinds=None, dry_run=False):
    """Start a restore of ``snap`` (see ``Snapshot.restore``)."""
    snap = _snapshot(snap.id) or snap  # its stored state, not a stale copy
    snap.check_finished()
    kinds = list(snap.kinds) if kinds is None else list(kinds)
    for kind in kinds:
        if kind not in snap.kinds:
            raise InvalidInput('kind', kind,
                               'not in snapshot %d' % snap.id)
    if dry_run:
        return {kind: plan_kind(snap, kind) for kind in kinds}
    restore_id = uuid.uuid4().hex

    def begin():
        current = _snapshot(snap.id)
        current.restore_id = restore_id
        current.restore_status = 'running' if kinds else 'finished'
        current.restore_kinds = kinds
        current.restore_done = {}
        current.restore_error = None
        current.put()
    transaction(begin)
    for kind in kinds:
        for position, (start, end) in enumerate(snap.ranges(kind)):
            async_.defer(restore_range,
                         args=(snap.id, restore_id, kind, position, start, end),
                         on_failure=restore_failed,
                         on_failure_args=(snap.id, restore_id))
    return None


def _backup(snap, kind, position):
    backup = snap.range_backup(kind, position)
    if backup is None:
        raise RangeCorrupted(snap.id, RangeBackup.prefix(snap.id, kind,
                                                         position),
                             'range backup is missing')
    return backup


def restore_range(snapshot_id, restore_id, kind, position, start, end):
    """Put one range back and delete what it did not hold; safe to repeat."""
    snap = _snapshot(snapshot_id)
    if (snap is None or snap.restore_id != restore_id
            or snap.is_done(kind, position, snap.restore_done)):
        return  # another restore started, or this range is back already
    backup = _backup(snap, kind, position)
    kept = set()
    chunk = []
    chunk_bytes = 0
    for entity in backup.iter_entities():
        kept.add(entity.key.SerializeToString())
        chunk.append(entity)
        chunk_bytes += entity.ByteSize()
        if len(chunk) >= 500 or chunk_bytes >= defaults.PART_SIZE:
            entities.put(chunk)
            chunk, chunk_bytes = [], 0
    entities.put(chunk)
    stale = []
    for reference in entities.iter_range_keys(kind, snap.namespace, start, end):
        if reference.SerializeToString() not in kept:
            stale.append(reference)
            if len(stale) >= 500:
                entities.delete(stale)
                stale = []
    entities.delete(stale)

    def commit():
        snap = _snapshot(snapshot_id)
        if snap is None or snap.restore_id != restore_id:
            return
        snap.mark_done(kind, position, snap.restore_done)
        total = snap.ranges_total(snap.restore_kinds)
        if snap._count(snap.restore_done) >= total:
            snap.restore_status = 'finished'
            snap.restored = utcnow()
        snap.put()
    transaction(commit)


def plan_kind(snap, kind):
    """What restoring ``kind`` would do: created, changed, deleted counts."""
    counts = collections.Counter(created=0, changed=0, deleted=0)
    for position, (start, end) in enumerate(snap.ranges(kind)):
        kept = set()
        chunk = []
        backup = _backup(snap, kind, position)
        for entity in backup.iter_entities():
            kept.add(entity.key.SerializeToString())
            chunk.append(entity)
            if len(chunk) >= 500:
                _compare(chunk, counts)
                chunk = []
        _compare(chunk, counts)
        for reference in entities.iter_range_keys(kind, snap.namespace,
                                                  start, end):
            if reference.SerializeToString() not in kept:
                counts['deleted'] += 1
    return dict(counts)


def _compare(stored, counts):
    current = entities.get([e.key for e in stored])
    for old, now in zip(stored, current):
        if now is None:
            counts['created'] += 1
        elif now.SerializeToString() != old.SerializeToString():
            counts['changed'] += 1


def delete_snapshot(snap):
    """Delete ``snap`` with its stored ranges; a task finishes large ones."""
    snapshot_id = snap.id
    if _purge(snapshot_id, _PURGE_INLINE):
        db.delete(snap.key())
        return

    def handover():
        db.delete(snap.key())
        async_.defer(purge_snapshot, args=(snapshot_id,))
    transaction(handover)


def purge_snapshot(snapshot_id):
    """Task: delete what is left of a deleted snapshot, batch by batch."""
    if not _purge(snapshot_id, _PURGE_INLINE):
        async_.defer(purge_snapshot, args=(snapshot_id,), once_only=False)


def _purge(snapshot_id, max_batches):
    """Delete up to ``max_batches`` batches; True once nothing is left."""
    for _ in range(max_batches):
        keys = []
        for model, prefix in ((RangeBackupPart, 'RBP:%d:' % snapshot_id),
                              (RangeBackup, 'RB:%d:' % snapshot_id)):
            for key in prefixed(model, prefix, keys_only=True):
                keys.append(key)
                if len(keys) >= _PURGE_BATCH:
                    break
            if len(keys) >= _PURGE_BATCH:
                break
        if not keys:
            return True
        retrying(db.delete, keys)
    return False
