"""Restoring a snapshot exactly: one task per range, and a dry run.

Each range's task puts the range's entities back as they were stored. The
task of a kind's first range also deletes the entities of the kind that the
snapshot does not hold: one key-ordered scan of the kind, merged with the
snapshot's keys range by range, so it costs one pass over the kind (a query
per range may cost the whole kind each time) and holds one range's keys.
After ``defaults.PASS_SECONDS`` the scan goes on in a task of its own,
which starts after the last key looked at; the first range is put back
and counted by the task that reaches the kind's end.

A restore counts its ranges in a ``RestoreProgress`` of its own: a small
entity that each range task reads and commits, where the snapshot carries
all its markers. The snapshot is written when the restore starts and when
it ends (or fails).
"""
import bisect
import collections
import time
import uuid

from google.appengine.ext import db

from .. import async_, defaults, entities
from ..base import (JsonProperty, LibraryModel, bit_is_set, done_bits,
                    retrying, set_bit, transaction, utcnow)
from ..exceptions import InvalidInput, RangeCorrupted
from .models import RangeBackup, iter_backups
from .ranges import get_snapshot

__all__ = ['RestoreProgress', 'restore', 'restore_range', 'restore_failed',
           'plan_kind', 'ranges_restored', 'forget']

#: Entities per put request at most, as the datastore allows.
_PUT_BATCH = 500
#: Keys the scan for stale entities looks at between looks at the clock.
_SCAN_CHECK = 500
#: Bytes of entities per put request at most: the datastore takes 1 MiB per
#: request, and the request's own fields need a little of it.
_PUT_BYTES = 1024 * 1024 - 1024


class RestoreProgress(LibraryModel):
    """Which ranges the latest restore of a snapshot has put back.

    One per snapshot (key name ``RP:<snapshot id>``), rewritten when a
    restore starts; a task whose ``restore_id`` it no longer holds belongs
    to an earlier restore and stops.
    """

    restore_id = db.StringProperty(indexed=False)
    totals = JsonProperty()  # {kind: number of ranges}
    done = JsonProperty()  # {kind: hex bits}, as ``Snapshot.restore_done``

    @classmethod
    def key_of(cls, snapshot_id):
        return cls.key_for('RP:%d' % snapshot_id)

    @classmethod
    def start(cls, snap):
        """The progress of ``snap``'s current restore, unsaved."""
        return cls(key=cls.key_of(snap.id), restore_id=snap.restore_id,
                   totals={kind: snap.range_count(kind)
                           for kind in snap.restore_kinds})

    def is_done(self, kind, position):
        return bit_is_set(self.done, kind, position)

    def mark_done(self, kind, position):
        set_bit(self.done, kind, position)

    def finished(self):
        return all(done_bits(self.done.get(kind)) == (1 << count) - 1
                   for kind, count in self.totals.items())



def _progress(snapshot_id, restore_id):
    progress = db.get(RestoreProgress.key_of(snapshot_id))
    if progress is None or progress.restore_id != restore_id:
        return None
    return progress


def ranges_restored(snap):
    """The done bits of ``snap``'s current restore, or None if it counts on
    the snapshot (a restore begun by an older version)."""
    progress = _progress(snap.id, snap.restore_id)
    return None if progress is None else progress.done


def forget(snapshot_id):
    """Delete what restores of a snapshot leave behind (with the snapshot)."""
    retrying(db.delete, RestoreProgress.key_of(snapshot_id))


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
        db.put([current, RestoreProgress.start(current)])
    transaction(begin)
    tasks = []
    for kind in kinds:  # a range's bounds are its backup's: no markers
        tasks.extend(async_.make_task(
            restore_range, args=(snap.id, restore_id, kind, position, None,
                                 None, key.name()),
            on_failure=restore_failed, on_failure_args=(snap.id, restore_id))
            for position, key in enumerate(_backup_keys(snap, kind)))
    async_.defer_many(tasks)
    return None


def _backup_keys(snap, kind):
    """The keys of the kind's range backups by position, from one query."""
    keys = snap.range_backup_keys(kind)
    if len(keys) != snap.range_count(kind):
        raise RangeCorrupted(snap.id, RangeBackup.prefix(
            snap.id, kind, len(keys)), 'a range backup is missing')
    return keys


def _backups(snap, kind, first=0):
    """The kind's range backups by position, from ``first`` on."""
    return iter_backups(snap.id, _backup_keys(snap, kind)[first:])


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


def _snapshot_keys(snap, kind, after=None):
    """``sort_key`` of every key the snapshot holds of ``kind``, in order,
    from the range that holds the sort key ``after`` on (all with None)."""
    position = 0
    if after is not None:
        markers = [entities.sort_key(m._ToPb())
                   for m in snap.kind_markers(kind)]
        position = bisect.bisect_right(markers, after)
    for backup in _backups(snap, kind, position):
        for record in backup.iter_records():
            yield entities.sort_key(entities.EntityProto.FromString(
                record).key)


def _scan(snap, kind, after=None):
    """Yield ``(reference, held)`` for each key of ``kind`` now stored
    (after the ``db.Key`` ``after``): does the snapshot hold it?

    Both sides come in the datastore's key order, so a merge finds them.
    """
    last = None if after is None else entities.sort_key(after._ToPb())
    held = None
    for reference in entities.iter_range_keys(kind, snap.namespace, after):
        current = entities.sort_key(reference)
        if last is not None and current <= last:
            continue
        if held is None:
            held = _snapshot_keys(snap, kind, last)
            next_held = next(held, None)
        while next_held is not None and next_held < current:
            next_held = next(held, None)
        yield reference, next_held == current


def _delete_stale(snap, kind, after=None):
    """Delete the keys of ``kind`` after ``after`` that the snapshot lacks.

    Returns None at the kind's end, else the last key (``db.Key``) it
    dealt with once ``defaults.PASS_SECONDS`` have passed.
    """
    stop_at = time.monotonic() + defaults.PASS_SECONDS
    stale = []
    for count, (reference, held) in enumerate(_scan(snap, kind, after), 1):
        if not held:
            stale.append(reference)
            if len(stale) >= _PUT_BATCH:
                entities.delete(stale)
                stale = []
        if count % _SCAN_CHECK == 0 and time.monotonic() >= stop_at:
            entities.delete(stale)
            return entities.key(reference)
    entities.delete(stale)
    return None


def restore_range(snapshot_id, restore_id, kind, position, start, end,
                  backup_name=None, after=None):
    """Put one range back (and, for the first, delete what the snapshot does
    not hold, going on after the key ``after``); safe to repeat.

    ``start`` and ``end`` go unused: tasks queued by older versions pass the
    range's bounds there.
    """
    progress = _progress(snapshot_id, restore_id)
    snap = None
    if progress is None:  # another restore started, or an older version's
        snap = get_snapshot(snapshot_id)
        if (snap is None or snap.restore_id != restore_id
                or snap.is_done(kind, position, snap.restore_done)):
            return
    elif progress.is_done(kind, position):
        return  # this range is back already
    if snap is None and (position == 0 or not backup_name):
        snap = get_snapshot(snapshot_id)
        if snap is None:
            return  # deleted meanwhile
    if position == 0:
        # Before the puts: a kind emptied since the snapshot then costs
        # one empty scan, and the snapshot's keys are decoded only as far
        # as the kind's current keys reach.
        left_at = _delete_stale(snap, kind, after)
        if left_at is not None:  # a large kind: the scan goes on
            async_.defer(restore_range, args=(
                snapshot_id, restore_id, kind, 0, start, end, backup_name),
                kwargs={'after': left_at}, on_failure=restore_failed,
                on_failure_args=(snapshot_id, restore_id))
            return
    backup = (RangeBackup.get_by_key_name(backup_name) if backup_name
              else snap.range_backup(kind, position))
    if backup is None:
        raise RangeCorrupted(snapshot_id, backup_name or RangeBackup.prefix(
            snapshot_id, kind, position), 'range backup is missing')
    for chunk in _chunks(backup.iter_records()):
        entities.put_encoded(chunk)  # as stored: no decoding needed
    commit = _commit if progress is not None else _commit_on_snapshot
    transaction(commit, snapshot_id, restore_id, kind, position)


def _commit(snapshot_id, restore_id, kind, position):
    """Count the range; the last one finishes the restore on the snapshot."""
    progress = _progress(snapshot_id, restore_id)
    if progress is None or progress.is_done(kind, position):
        return
    progress.mark_done(kind, position)
    progress.put()
    if progress.finished():
        snap = get_snapshot(snapshot_id)
        if snap is not None and snap.restore_id == restore_id:
            snap.restore_done = progress.done
            snap.restore_status = 'finished'
            snap.restored = utcnow()
            snap.put()


def _commit_on_snapshot(snapshot_id, restore_id, kind, position):
    """Count the range of a restore begun by a version that counted on the
    snapshot, as that version does: its workers may still be at it."""
    snap = get_snapshot(snapshot_id)
    if snap is None or snap.restore_id != restore_id:
        return
    snap.mark_done(kind, position, snap.restore_done)
    total = snap.ranges_total(snap.restore_kinds)
    if snap._count(snap.restore_done) >= total:
        snap.restore_status = 'finished'
        snap.restored = utcnow()
    snap.put()


def plan_kind(snap, kind):
    """What restoring ``kind`` would do: created, changed, deleted counts.

    The stored ranges are read once: every key of the kind now stored that
    is not one of the snapshot's found there would be deleted.
    """
    counts = collections.Counter(created=0, changed=0, deleted=0)
    found = 0  # keys of the snapshot's that are stored now
    for backup in _backups(snap, kind):
        for chunk in _chunks(backup.iter_records()):
            chunk = [entities.EntityProto.FromString(r) for r in chunk]
            current = entities.get([e.key for e in chunk])
            for old, now in zip(chunk, current):
                if now is None:
                    counts['created'] += 1
                    continue
                found += 1
                if now.SerializeToString() != old.SerializeToString():
                    counts['changed'] += 1
    stored = sum(1 for _ in entities.iter_range_keys(kind, snap.namespace))
    counts['deleted'] = stored - found
    return dict(counts)
