"""Restoring a snapshot exactly: one task per range, and a dry run.

Each range's task puts the range's entities back as they were stored. The
task of a kind's first range also deletes the entities of the kind that the
snapshot does not hold: one key-ordered scan of the kind, merged with the
snapshot's keys range by range, so it costs one pass over the kind (a query
per range may cost the whole kind each time) and holds one range's keys.
"""
import collections
import uuid

from google.appengine.ext import db

from .. import async_, entities
from ..base import transaction, utcnow
from ..exceptions import InvalidInput, RangeCorrupted
from .models import RangeBackup
from .ranges import get_snapshot

__all__ = ['restore', 'restore_range', 'restore_failed', 'plan_kind']

#: Entities per put request at most, as the datastore allows.
_PUT_BATCH = 500
#: Bytes of entities per put request at most: the datastore takes 1 MiB per
#: request, and the request's own fields need a little of it.
_PUT_BYTES = 1024 * 1024 - 1024


def restore_failed(message, snapshot_id, restore_id):
    """``on_failure`` of a restore's tasks: the restore goes to error."""
    def fail():
        snap = get_snapshot(snapshot_id)
        if snap is not None and snap.restore_id == restore_id:
            snap.restore_status = 'error'
            snap.restore_error = message
            snap.put()
    transaction(fail)


def restore(snap, kinds=None, dry_run=False):
    """Start a restore of ``snap`` (see ``Snapshot.restore``)."""
    snap = get_snapshot(snap.id) or snap  # its stored state, not a stale copy
    snap.check_finished()
    kinds = list(snap.kinds) if kinds is None else list(kinds)
    for kind in kinds:
        if kind not in snap.kinds:
            raise InvalidInput('kind', kind, 'not in snapshot %d' % snap.id)
    if dry_run:
        return {kind: plan_kind(snap, kind) for kind in kinds}
    restore_id = uuid.uuid4().hex

    def begin():
        current = get_snapshot(snap.id)
        current.restore_id = restore_id
        current.restore_status = 'running' if kinds else 'finished'
        current.restore_kinds = kinds
        current.restore_done = {}
        current.restore_error = None
        current.put()
    transaction(begin)
    tasks = []
    for kind in kinds:
        backups = _backup_keys(snap, kind)
        tasks.extend(async_.make_task(
            restore_range, args=(snap.id, restore_id, kind, position, start,
                                 end, backups[position].name()),
            on_failure=restore_failed, on_failure_args=(snap.id, restore_id))
            for position, (start, end) in enumerate(snap.ranges(kind)))
    async_.defer_many(tasks)
    return None


def _backup_keys(snap, kind):
    """The keys of the kind's range backups by position, from one query."""
    keys = snap.range_backup_keys(kind)
    if len(keys) != snap.range_count(kind):
        raise RangeCorrupted(snap.id, RangeBackup.prefix(
            snap.id, kind, len(keys)), 'a range backup is missing')
    return keys


def _backups(snap, kind):
    """The kind's range backups by position, read one at a time."""
    for key in _backup_keys(snap, kind):
        backup = db.get(key)
        if backup is None:
            raise RangeCorrupted(snap.id, key.name(), 'range backup is missing')
        yield backup


def _chunks(records):
    """Cut encoded entities into put requests within the datastore's limits.

    A record costs its bytes plus at most 4 of framing in the request; one
    record larger than the limit still goes, alone.
    """
    chunk, size = [], 0
    for record in records:
        if chunk and (len(chunk) >= _PUT_BATCH
                      or size + len(record) + 4 > _PUT_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(record)
        size += len(record) + 4
    if chunk:
        yield chunk


def _snapshot_keys(snap, kind):
    """``sort_key`` of every key the snapshot holds of ``kind``, in order."""
    for backup in _backups(snap, kind):
        for record in backup.iter_records():
            yield entities.sort_key(entities.EntityProto.FromString(
                record).key)


def _not_inget_snapshot(snap, kind):
    """Yield the keys of ``kind`` now stored that the snapshot does not hold.

    Both sides come in the datastore's key order, so a merge finds them.
    """
    held = None
    for reference in entities.iter_range_keys(kind, snap.namespace):
        current = entities.sort_key(reference)
        if held is None:
            held = _snapshot_keys(snap, kind)
            next_held = next(held, None)
        while next_held is not None and next_held < current:
            next_held = next(held, None)
        if next_held != current:
            yield reference


def restore_range(snapshot_id, restore_id, kind, position, start, end,
                  backup_name=None):
    """Put one range back (and, for the first, delete what the snapshot does
    not hold); safe to repeat."""
    snap = get_snapshot(snapshot_id)
    if (snap is None or snap.restore_id != restore_id
            or snap.is_done(kind, position, snap.restore_done)):
        return  # another restore started, or this range is back already
    if position == 0:
        # Before the puts: a kind emptied since the snapshot then costs
        # one empty scan, and the snapshot's keys are decoded only as far
        # as the kind's current keys reach.
        stale = []
        for reference in _not_inget_snapshot(snap, kind):
            stale.append(reference)
            if len(stale) >= _PUT_BATCH:
                entities.delete(stale)
                stale = []
        entities.delete(stale)
    backup = (RangeBackup.get_by_key_name(backup_name) if backup_name
              else snap.range_backup(kind, position))
    if backup is None:
        raise RangeCorrupted(snap.id, backup_name or RangeBackup.prefix(
            snap.id, kind, position), 'range backup is missing')
    for chunk in _chunks(backup.iter_records()):
        entities.put_encoded(chunk)  # as stored: no decoding needed

    def commit():
        snap = get_snapshot(snapshot_id)
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
    for backup in _backups(snap, kind):
        for chunk in _chunks(backup.iter_records()):
            chunk = [entities.EntityProto.FromString(r) for r in chunk]
            current = entities.get([e.key for e in chunk])
            for old, now in zip(chunk, current):
                if now is None:
                    counts['created'] += 1
                elif now.SerializeToString() != old.SerializeToString():
                    counts['changed'] += 1
    counts['deleted'] = sum(1 for _ in _not_inget_snapshot(snap, kind))
    return dict(counts)
