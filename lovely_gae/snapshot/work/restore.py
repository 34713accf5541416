"""Restoring a snapshot exactly, range by range, in parallel tasks.

A restore first checks every range it will put back: each range backup is
there, once, and its stored bytes match their sha256, their entity count,
their kind, namespace and key bounds. Only then does it write, so a damaged
snapshot is refused whole, never half put back. Each range's task puts the
range's entities back as they were stored and deletes the entities now
stored within the range's key bounds that the range does not hold. The
ranges of a kind cover its whole key space, so together they delete every
entity the snapshot lacks, each task reading only its own range.

A kind of a namespace is restored by one restore at a time: a restore
locks its kinds in the transaction that starts it and frees them in the one
that ends it (finished or failed).

A small restore (``INLINE_RANGES`` ranges, ``INLINE_BYTES`` stored) is
checked in the call that starts it, and its tasks, one a range, commit with
its start. A larger one starts with a task that fans out checking tasks a
page at a time; when all have passed (``completion``), writing tasks fan
out the same way, each putting back up to ``WRITE_RANGES`` ranges. Every
write invalidates ndb's cache of the keys it touches (``cache``).
"""
import collections
import logging
import uuid

from google.appengine.ext import db

from ... import async_, cache, completion, defaults, entities
from ...base import get_all, retrying, transaction, utcnow
from ...exceptions import (InvalidInput, RangeCorrupted, SnapshotIncomplete,
                           SnapshotInUse, SnapshotNotFound)
from . import locks, ranges
from .. import names
from ..models import ACTIONS, Snapshot, backup_keys, iter_backups
from ..restores import Restore, RestoreStatus, ranges_count

__all__ = ['restore', 'delete', 'restore_failed', 'forget', 'new_record',
           'task', 'first_tasks', 'leaves', 'records', 'mark_deleting',
           'PHASES', 'INLINE_RANGES', 'INLINE_BYTES', 'CHECK_RANGES', 'WRITE_RANGES']

log = logging.getLogger(__name__)

#: Ranges a restore checks in the call that starts it at most; its tasks,
#: one a range, then commit with its start (a transaction spans
#: ``defaults.MAX_TRANSACTION_GROUPS`` entity groups: the snapshot, the
#: restore, the locks and these tasks).
INLINE_RANGES = 20
#: Stored bytes a restore checks in the call that starts it at most.
INLINE_BYTES = 16 * 1024 * 1024
#: Ranges one checking task checks.
CHECK_RANGES = 20
#: Ranges one writing task of a large restore puts back.
WRITE_RANGES = 4
#: Tasks one fan-out task queues, with the next fan-out task.
FAN_OUT = 100
#: Bytes of entities per put request at most: the request's own fields
#: need a little of the datastore's 1 MiB.
_PUT_BYTES = defaults.MAX_REQUEST_BYTES - 1024
#: Puts a restore task has on their way at once, at most.
_PUTS_IN_FLIGHT = 4


def _bounds(backup):
    return tuple(None if key is None else entities.sort_key(key._ToPb())
                 for key in (backup.start, backup.end))


def records(backup, namespace):
    """Yield ``(record, reference)`` of a range, checked on the way: its
    bytes (before the first is handed out), kind, namespace and bounds."""
    start, end = _bounds(backup)
    count = 0
    for record in backup.iter_records():
        reference = entities.EntityProto.FromString(record).key
        place = entities.sort_key(reference)
        if (reference.path.element[-1].type != backup.range_kind
                or reference.name_space != namespace
                or start is not None and place < start
                or end is not None and place >= end):
            raise RangeCorrupted(backup.snapshot_id, backup.name,
                                 'holds an entity outside the range')
        count += 1
        yield record, reference
    if count != backup.count:
        raise RangeCorrupted(backup.snapshot_id, backup.name,
                             'holds %d entities, %d were stored'
                             % (count, backup.count))


def _check(backups, namespace):
    for backup in backups:
        collections.deque(records(backup, namespace), maxlen=0)


def _per_task(record, phase):
    return CHECK_RANGES if phase == 'check' else record.per_task


def _leaf(record, phase, index):
    """``(kind, first position, ranges)`` of task ``index`` of a phase."""
    per = _per_task(record, phase)
    for kind_index, first, total in record.spans:
        tasks = -(-total // per)
        if index < tasks:
            start = index * per
            return (record.kinds[kind_index], first + start,
                    min(per, total - start))
        index -= tasks
    return None


def leaves(record, phase):
    """How many tasks a phase of ``record`` has."""
    per = _per_task(record, phase)
    return sum(-(-total // per) for _, _, total in record.spans)


#: The task of each phase, by name: ``check``, ``write`` and (``plan``)
#: ``plan``; each takes ``(restore id, index, kind, first, count)``.
PHASES = {}


def task(record, phase, index):
    """Task ``index`` of a phase of ``record``."""
    kind, first, count = _leaf(record, phase, index)
    return async_.make_task(PHASES[phase], args=(record.id, index, kind,
                                                  first, count),
                            on_failure=restore_failed,
                            on_failure_args=(record.id,))


def first_tasks(record, phase):
    """The tasks that start a phase: all of them, if they are few enough
    to commit with the start, else the first of the tasks that queue them
    a page at a time."""
    if leaves(record, phase) <= INLINE_RANGES:
        return [task(record, phase, index)
                for index in range(leaves(record, phase))]
    return [async_.make_task(fan_out, args=(record.id, phase, 0),
                             on_failure=restore_failed,
                             on_failure_args=(record.id,))]


def new_record(snap, kinds, dry_run=False):
    """The unsaved ``Restore`` of ``kinds`` of the stored ``snap``."""
    snap.check_finished()
    kinds = list(dict.fromkeys(snap.kinds if kinds is None else kinds))
    for kind in kinds:
        if kind not in snap.kinds:
            raise InvalidInput('kind', kind, 'not in snapshot %d' % snap.id)
    return Restore(key=Restore.key_for(uuid.uuid4().hex),
                   snapshot_id=snap.id, namespace=snap.namespace,
                   kinds=kinds, dry_run=dry_run, spans=[
                       [index, first, count]
                       for index, kind in enumerate(kinds)
                       for first, count in snap.spans(kind)])


def restore(snap, kinds=None):
    """Start a restore of ``snap`` (see ``Snapshot.restore``)."""
    snap = _snapshot(snap.id) or snap  # its stored state, not a stale copy
    record = new_record(snap, kinds)
    kinds = record.kinds
    keys = []
    if record.ranges_total() <= INLINE_RANGES:  # listed here: a few keys
        keys = [key for kind in kinds for key in snap.range_backup_keys(kind)]
    stored = sum(int(key.name().rsplit(':', 1)[1]) for key in keys)
    if keys and stored <= INLINE_BYTES:
        _check(iter_backups(snap.id, keys), snap.namespace)
        record.status = RestoreStatus.RUNNING.value
        tasks = first_tasks(record, 'write')
    else:
        record.per_task = WRITE_RANGES
        tasks = first_tasks(record, 'check')
    if not kinds:
        record.status, tasks = RestoreStatus.FINISHED.value, []
    transaction(_begin, snap.id, record, tasks)
    return None


def _snapshot(snapshot_id):
    return db.get(Snapshot.key_for(snapshot_id))


def _begin(snapshot_id, record, tasks):
    snap = _snapshot(snapshot_id)
    if snap is None:
        raise SnapshotNotFound(snapshot_id)
    snap.check_finished()  # not deleting meanwhile
    taken = (locks.take(record)
             if record.status != RestoreStatus.FINISHED.value else [])
    snap.restore_id = record.id
    db.put([snap, record] + taken)
    async_.defer_many(tasks)


@async_.task
def fan_out(restore_id, phase, page):
    """Task: queue the tasks of page ``page`` of a phase, and the next page."""
    record = db.get(Restore.key_for(restore_id))
    wanted = (RestoreStatus.CHECKING if phase == 'check'
              else RestoreStatus.RUNNING).value
    if record is None or record.status != wanted:
        return
    first = page * FAN_OUT
    last = min(first + FAN_OUT, leaves(record, phase))
    tasks = [task(record, phase, index) for index in range(first, last)]
    if last < leaves(record, phase):
        tasks.append(async_.make_task(
            fan_out, args=(restore_id, phase, page + 1),
            on_failure=restore_failed, on_failure_args=(restore_id,)))
    async_.defer_many(tasks)


@async_.task
def check_ranges(restore_id, index, kind, first, count):
    """Task: check ``count`` ranges of ``kind``; the last check starts the
    writing."""
    record = db.get(Restore.key_for(restore_id))
    if record is None or record.status != RestoreStatus.CHECKING.value:
        return
    try:
        _check(iter_backups(record.snapshot_id, backup_keys(
            record.snapshot_id, kind, first, count)), record.namespace)
    except (RangeCorrupted, SnapshotIncomplete) as error:  # no retry mends
        restore_failed(str(error), restore_id)
        return
    if completion.mark(record.job('check'), index, {'ranges': count},
                       leaves(record, 'check')):
        _start_writing(restore_id)


def _start_writing(restore_id):
    """Every range has passed: the writing begins. Not in a transaction:
    the tasks that see the last check in at once do the same."""
    record = db.get(Restore.key_for(restore_id))
    if record is not None and record.status == RestoreStatus.CHECKING.value:
        record.status = RestoreStatus.RUNNING.value
        retrying(record.put)
        async_.defer(fan_out, args=(restore_id, 'write', 0),
                     on_failure=restore_failed, on_failure_args=(restore_id,))


@async_.task
def restore_ranges(restore_id, index, kind, first, count):
    """Task: put ``count`` ranges of ``kind`` back; the last one to end
    finishes the restore. Safe to repeat."""
    job = names.restore_job(restore_id, 'write')
    record, done = get_all([Restore.key_for(restore_id),
                            completion.key(job, index)])
    if record is None or record.status != RestoreStatus.RUNNING.value:
        return
    counts = {ranges_count(record.kinds.index(kind)): count,
              'entities': 0, 'deleted': 0}
    if done is None:  # else a run that ended before may not have ascended
        counts['entities'], counts['deleted'] = _restore_ranges(
            list(iter_backups(record.snapshot_id, backup_keys(
                record.snapshot_id, kind, first, count))), record.namespace)
        total = completion.mark(job, index, counts, leaves(record, 'write'))
    else:
        total = completion.ascend(job, index, leaves(record, 'write'))
    if total:
        _finish(restore_id, total)
        completion.purge(record.job('check'))


def _restore_ranges(backups, namespace):
    """Put ranges back, delete what they lack in their bounds; both counts.

    Each range's query for the keys there now is sent first, and up to
    ``_PUTS_IN_FLIGHT`` puts are on their way at once: the task waits for
    the datastore once for many calls, not once a call.
    """
    there_now = [entities.send_range(backup.range_kind, namespace,
                                     backup.start, backup.end, keys_only=True)
                 for backup in backups]
    in_flight, put, deleted = collections.deque(), 0, 0

    def send(chunk):
        locked = cache.lock([reference for _, reference in chunk])
        in_flight.append((entities.SentPut([record for record, _ in chunk]),
                          locked))
        if len(in_flight) > _PUTS_IN_FLIGHT:
            landed()

    def landed():
        sent, locked = in_flight.popleft()
        sent.wait()
        cache.release(locked)

    for backup, query in zip(backups, there_now):
        held, chunk, size = set(), [], 0
        for record, reference in records(backup, namespace):
            if chunk and (len(chunk) >= defaults.MAX_REQUEST_ENTITIES
                          or size + len(record) + 4 > _PUT_BYTES):
                send(chunk)
                put, chunk, size = put + len(chunk), [], 0
            held.add(entities.sort_key(reference))
            chunk.append((record, reference))
            size += len(record) + 4  # with its framing in the request
        if chunk:
            send(chunk)
            put += len(chunk)
        stale = [reference for reference in entities.read_range(query)
                 if entities.sort_key(reference) not in held]
        for start in range(0, len(stale), defaults.MAX_REQUEST_ENTITIES):
            batch = stale[start:start + defaults.MAX_REQUEST_ENTITIES]
            with cache.uncached(batch):
                entities.delete(batch)
        deleted += len(stale)
    while in_flight:
        landed()
    return put, deleted


def _finish(restore_id, counts):
    """The last range is back: the restore has finished, its kinds are
    free. Not in a transaction, as ``_start_writing``."""
    record = db.get(Restore.key_for(restore_id))
    if record is None or record.status != RestoreStatus.RUNNING.value:
        return
    record.status = RestoreStatus.FINISHED.value
    record.entities = counts.get('entities', 0)
    record.deleted = counts.get('deleted', 0)
    record.finished = utcnow()
    retrying(db.put, record)
    retrying(locks.free, record)


@async_.task
def mark_deleting(snapshot_id):
    """Mark a snapshot ``deleting``, unless a restore of it holds a kind
    (``SnapshotInUse``): in one transaction with the locks, so that no
    restore of it starts from then on."""
    def mark():
        snap = _snapshot(snapshot_id)
        if snap is None:
            return
        for lock in locks.held():
            if lock.snapshot_id == snapshot_id:
                raise SnapshotInUse(snapshot_id, lock.restore_id)
        snap.status = Snapshot.STATUS_DELETING
        snap.put()
    transaction(mark)


@async_.task
def restore_failed(message, restore_id):
    """``on_failure`` of a restore's tasks: it goes to error, its kinds free."""
    def fail():
        record = db.get(Restore.key_for(restore_id))
        if record is None or record.status in (RestoreStatus.FINISHED.value,
                                               RestoreStatus.ERROR.value):
            return
        record.status = RestoreStatus.ERROR.value
        record.error = message
        db.put(record)
        locks.free(record)
    log.error('restore %s failed: %s', restore_id, message)
    transaction(fail)


def delete(snap):
    """Delete ``snap`` and what is stored of it (see ``Snapshot.delete``)."""
    ended = snap.status == Snapshot.STATUS_FINISHED
    mark_deleting(snap.id)
    forget(snap.id)
    ranges.delete_snapshot(snap, ended)


def forget(snapshot_id):
    """Delete the restores of a snapshot and what they left behind."""
    for record in Restore.all().filter('snapshot_id =', snapshot_id):
        if record.status in (RestoreStatus.CHECKING.value,
                             RestoreStatus.RUNNING.value):
            restore_failed('its snapshot was deleted', record.id)
        for phase in ('check', 'write'):
            completion.purge(record.job(phase))
        db.delete(record.key())


PHASES.update(check=check_ranges, write=restore_ranges)
ACTIONS.update(restore=restore, delete=delete)
