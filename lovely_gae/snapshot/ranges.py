"""The tasks that store a snapshot, range by range, and purge a deleted one.

Every task here may run twice, or in two workers at once, and still leave
one result: a range is counted and its ``RangeBackup`` written in one
transaction with the snapshot, guarded by the range's bit in
``Snapshot.done``; the loser of a race deletes the parts it wrote.

A snapshot holds the entities that existed when its kind's markers were
taken, each as it was when its range was stored: the markers task hands
each range task its keys, and the range task reads them with batch gets,
which cost the range where a range query may cost the whole kind.
"""
import logging
import uuid

from google.appengine.ext import db

from .. import async_, defaults, entities
from ..base import retrying, transaction
from ..exceptions import RangeCorrupted
from .keylists import RangeKeys
from .models import RangeBackup, RangeBackupPart, Snapshot, prefixed
from .storage import RangeWriter

log = logging.getLogger(__name__)

#: Keys deleted per datastore call when purging a snapshot.
_PURGE_BATCH = 500
#: Purge calls made in the caller's request before the rest goes to a task.
_PURGE_INLINE = 20
#: Keys per batch get when a range is read (fewer for large entities).
_GET_BATCH = 500


def get_snapshot(snapshot_id):
    return Snapshot.get_by_id(snapshot_id)


def snapshot_failed(message, snapshot_id):
    """``on_failure`` of a snapshot's tasks: the snapshot goes to ERROR."""
    def fail():
        snap = get_snapshot(snapshot_id)
        if snap is not None and snap.status != Snapshot.STATUS_FINISHED:
            snap.status = Snapshot.STATUS_ERROR
            snap.error = message
            snap.put()
    transaction(fail)


def save_range_keys(snapshot_id, kind, token, ranges_keys):
    """``keys_sink`` of the markers task: one ``RangeKeys`` list per range."""
    lists = []
    for position, references in ranges_keys:
        lists.extend(RangeKeys.build(snapshot_id, kind, position, token,
                                     references))
    retrying(db.put, lists)


def markers_ready(snapshot_id, kind, markers, token=None):
    """Record a kind's markers (first ones win) and queue a task per range."""
    def record():
        snap = get_snapshot(snapshot_id)
        if snap is None:
            return None
        if snap.range_count(kind) is None:
            snap.set_markers(kind, markers)
            snap.key_lists[kind] = token
            if snap.status == Snapshot.STATUS_STARTED:
                snap.status = Snapshot.STATUS_STORING
            snap.put()
        return snap
    snap = transaction(record)
    if snap is None or snap.status == Snapshot.STATUS_ERROR:
        return
    token = snap.key_lists.get(kind)
    async_.defer_many(
        async_.make_task(store_range, args=(snapshot_id, kind, position,
                                            start, end, token),
                         on_failure=snapshot_failed,
                         on_failure_args=(snapshot_id,))
        for position, (start, end) in enumerate(snap.ranges(kind)))


def _key_list(snap, kind, position, token):
    """``(references, keys of the list's parts)`` of a range's key list.

    None if the range was stored meanwhile (its task deleted the list).
    """
    found = RangeKeys.read(snap.id, kind, position, token)
    if found is None:
        if get_snapshot(snap.id).is_done(kind, position):
            return None
        raise RangeCorrupted(snap.id, RangeBackup.prefix(snap.id, kind,
                                                         position),
                             'its key list is missing')
    return found


def _get_all(references):
    """Yield the entities of ``references`` that exist, in that order."""
    batch = 50
    while references:
        chunk, references = references[:batch], references[batch:]
        got = [e for e in entities.get(chunk) if e is not None]
        yield from got
        if got:  # keep a batch near half a part, whatever the entity size
            average = sum(e.ByteSize() for e in got) / len(got)
            batch = max(1, min(_GET_BATCH,
                               int(defaults.PART_SIZE // (2 * average))))


def store_range(snapshot_id, kind, position, start, end, token=None):
    """Store the entities of one range; a no-op if it is stored already."""
    snap = get_snapshot(snapshot_id)
    if (snap is None or snap.status == Snapshot.STATUS_ERROR
            or snap.is_done(kind, position)):
        return
    prefix = RangeBackup.prefix(snapshot_id, kind, position)
    parts_token = uuid.uuid4().hex[:12]
    writer = RangeWriter(snap.codec)
    first = []
    written = []

    def emit(parts):
        for part in parts:
            if not first:
                first.append(part)
                continue
            name = RangeBackupPart.make_name(prefix[:-1], parts_token,
                                             len(written) + 1)
            written.append(retrying(
                RangeBackupPart(key_name=name, data=part).put))

    if token is None:  # queued by a version without key lists
        source, list_keys = entities.iter_range(kind, snap.namespace, start,
                                                end), []
    else:
        found = _key_list(snap, kind, position, token)
        if found is None:
            return
        references, list_keys = found
        source = _get_all(references)
    for entity in source:
        emit(writer.add(entity.SerializeToString()))
    emit(writer.close())
    backup = RangeBackup(
        key_name=RangeBackup.make_name(snapshot_id, kind, position,
                                       writer.size),
        snapshot=snap.key(), range_kind=kind, position=position, start=start,
        end=end, count=writer.count, size=writer.size, sha256=writer.sha256,
        codec=writer.codec, parts=len(written) + 1,
        part_size=writer.part_size, token=parts_token,
        data=first[0] if first else b'')

    def commit():
        snap = get_snapshot(snapshot_id)
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
        written.extend(list_keys)  # the winner deletes them too
        retrying(db.delete, written)
    else:
        retrying(db.delete, list_keys)  # the key list has served


def delete_snapshot(snap):
    """Delete ``snap`` with its stored ranges; a task finishes large ones."""
    snapshot_id = snap.id
    if _purge(snapshot_id, _PURGE_INLINE):
        retrying(db.delete, snap.key())
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
    prefixes = ((RangeBackupPart, 'RBP:%d:' % snapshot_id),
                (RangeKeys, 'RK:%d:' % snapshot_id),
                (RangeBackup, 'RB:%d:' % snapshot_id))
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
        retrying(db.delete, keys)
    return False
