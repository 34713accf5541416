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
locks its kinds in the transaction that starts it and frees them as it ends
(finished; or failed, in the transaction that says so). A task that puts
entities back reads its kind's lock with the record (``begin_part``): a
copy that comes while its restore no longer holds it puts nothing back
and fails the restore.

A small restore (``waves.INLINE_RANGES`` ranges, ``INLINE_BYTES`` stored)
is checked in the call that starts it, and its tasks, one a range, commit
with its start. A larger one is checked by tasks first: they commit with
its start while few, else a task fans them out a page at a time. The task
that sees the last check pass (``completion``) queues the first page of
writing tasks itself, and marks that the writing began beside the record
(``Restore.begun_key``), never over it. A large restore's tasks come in
whole waves of ``defaults.SHARDS`` (the queue's concurrency, see
``waves``). Every write invalidates ndb's cache of the keys it touches
(``cache``).
"""
import logging
import uuid

from google.appengine.ext import db

from ... import async_, completion
from ...base import delete_all, get_all, retrying, transaction, utcnow
from ...exceptions import (InvalidInput, RangeCorrupted,
                           SnapshotIncomplete, SnapshotNotFound)
from . import locks, putback, waves
from .. import names
from ..backups import iter_backups, range_backup_keys
from ..models import ACTIONS, Snapshot
from ..restores import (Restore, RestoreStatus, begun_key, checking,
                        ranges_count, writing)

__all__ = ['restore', 'restore_failed', 'new_record', 'begin', 'first_tasks',
           'begin_part', 'part_counts', 'part_done', 'PHASES', 'ENDS']

log = logging.getLogger(__name__)

#: Stored bytes a restore checks in the call that starts it at most.
INLINE_BYTES = 16 * 1024 * 1024
#: Tasks one fan-out task queues, with the next fan-out task.
FAN_OUT = 100


#: The task of each phase, by name: ``check``, ``write`` and (``plan``)
#: ``plan``; each takes ``(restore id, snapshot id, namespace, index, kind,
#: first, count)``: with the snapshot's id it reads its ranges while it
#: reads the restore, with the namespace its kind's lock with the restore
#: (what it reads and writes is the restore's namespace: a task whose
#: namespace were another would find no lock of its restore there).
PHASES = {}


def task(record, phase, index):
    """Task ``index`` of a phase of ``record``."""
    kind, first, count = waves.leaf(record, phase, index)
    return async_.make_task(PHASES[phase], args=(
        record.id, record.snapshot_id, record.namespace, index, kind, first,
        count),
        on_failure=restore_failed, on_failure_args=(record.id,))


def first_tasks(record, phase):
    """The tasks that start a phase: all of them, if they are few enough
    to commit with the start, else the first of the tasks that queue them
    a page at a time."""
    if waves.leaves(record, phase) <= waves.INLINE_RANGES:
        return [task(record, phase, index)
                for index in range(waves.leaves(record, phase))]
    return [async_.make_task(fan_out, args=(record.id, record.snapshot_id,
                                            phase, 0),
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
    """Start a restore of ``snap`` (see ``Snapshot.restore``); its id."""
    if snap.status != Snapshot.STATUS_FINISHED:  # finished, its ranges stay
        snap = db.get(snap.key()) or snap  # its stored state, not a stale copy
    record = new_record(snap, kinds)
    kinds = record.kinds
    keys = []
    if record.ranges_total() <= waves.INLINE_RANGES:  # a few keys: listed
        keys = [key for kind in kinds for key in range_backup_keys(snap, kind)]
    stored = sum(int(key.name().rsplit(':', 1)[1]) for key in keys)
    if keys and stored <= INLINE_BYTES:
        putback.check(iter_backups(snap.id, keys), snap.namespace)
        record.status = RestoreStatus.RUNNING.value
        tasks = first_tasks(record, 'write')
    else:
        waves.size_tasks(record)
        tasks = first_tasks(record, 'check')
    if not kinds:
        record.status, tasks = RestoreStatus.FINISHED.value, []
    transaction(begin, snap.id, record, tasks)
    return record.id


def begin(snapshot_id, record, tasks):
    """Save the restore (or dry run), its locks (a dry run holds none) and
    its first tasks, in one transaction (read in one call, written in two
    at once). A record found stored is this start's, landed though its
    commit timed out: its tasks may have run since (even to the end), and
    stored again it would go back. Not once the snapshot's delete began:
    the delete would not stop it (``deleting.forget``)."""
    locking = not record.dry_run and (
        record.status != RestoreStatus.FINISHED.value)
    held = locks.held().run(batch_size=1000) if locking else ()  # with get
    snap, stored = db.get([Snapshot.key_for(snapshot_id), record.key()])
    if stored is not None:
        return
    if snap is None:
        raise SnapshotNotFound(snapshot_id)
    snap.check_finished()  # not deleting meanwhile
    taken = locks.take(record, list(held)) if locking else []
    if record.dry_run:
        snap.plan_id = record.id
    else:
        snap.restore_id = record.id
    put = db.put_async([snap, record] + taken)
    async_.defer_many(tasks)
    put.get_result()


@async_.task
def fan_out(restore_id, snapshot_id, phase, page):
    """Task: queue the tasks of page ``page`` of a phase, and the next page."""
    record, begun = get_all([Restore.key_for(restore_id),
                              begun_key(snapshot_id, restore_id)])
    if (checking(record, begun) if phase == 'check'
            else writing(record, begun)):  # write, plan
        async_.defer_many(_page(record, phase, page))


def _page(record, phase, page):
    """The fan-out of the next page of a phase, then the tasks of page
    ``page``: first, so that the next page is queued while this one runs,
    not behind it."""
    first = page * FAN_OUT
    last = min(first + FAN_OUT, waves.leaves(record, phase))
    tasks = []  # made first, due first
    if last < waves.leaves(record, phase):
        tasks.append(async_.make_task(
            fan_out, args=(record.id, record.snapshot_id, phase, page + 1),
            on_failure=restore_failed, on_failure_args=(record.id,)))
    return tasks + [task(record, phase, index)
                    for index in range(first, last)]


@async_.task
def check_ranges(restore_id, snapshot_id, namespace, index, kind, first,
                 count):
    """Task: check ``count`` ranges of ``kind``; the last check starts the
    writing."""
    sent = putback.SentBackups(snapshot_id, kind, first, count)
    record, begun = get_all([Restore.key_for(restore_id),
                              begun_key(snapshot_id, restore_id)])
    if not checking(record, begun):
        return
    try:
        putback.check(putback.read_backups(sent), record.namespace)
    except (RangeCorrupted, SnapshotIncomplete) as error:  # no retry mends
        restore_failed(str(error), restore_id)
        return
    if completion.mark(record.job('check'), index, {'ranges': count},
                       waves.leaves(record, 'check'),
                       waves.fanout(record, 'check')):
        _start_writing(record)


def _start_writing(record):
    """Every range has passed: the writing begins, its first page of tasks
    queued here, a hop sooner than by a fan-out task. The tasks are stored
    first, then the marker that says the writing began (``begun_key``),
    as the tasks are pushed: a non-transactional commit "may not apply as
    all or none" (Datastore's CommitRequest.Mode), and a marker stored
    without its tasks would leave this task's retry nothing to do. A task
    a worker takes before the marker has landed is tried again
    (``writing``). Not in a transaction: the tasks that see the last
    check in at once do the same, and queue the same named tasks. The
    record is not written: one that comes late (``record`` was read as
    it began), after the restore failed or finished meanwhile, stores
    only the marker again, beside the record, and its tasks find the
    restore ended (``begin_part``)."""
    if record is not None and record.status == RestoreStatus.CHECKING.value:
        begun = completion.Done(key=record.begun_key(), tally={})
        async_.defer_many(_page(record, 'write', 0),
                          then=[db.model_to_protobuf(begun)])


def begin_part(phase, restore_id, snapshot_id, namespace, index, kind, first,
               count):
    """``(record, sent backups)`` for task ``index`` of a phase that puts
    ranges back (``write``) or counts them (``plan``), or ``(None, None)``
    if it has nothing to do: the restore is not writing (finished: a run
    that ended it may have died before it freed all, this one ends it
    again), or this part was done before (by a run that may not have
    ascended: this one does), or the restore no longer holds the lock of
    ``kind``, read in the same call: it fails (``locks.lost``). A part
    done puts nothing back: its copies ascend whoever holds the lock now
    (over a restore finished meanwhile, see ``_start_writing``)."""
    sent = putback.SentBackups(snapshot_id, kind, first, count)
    keys = [Restore.key_for(restore_id), completion.key(
        names.restore_job(snapshot_id, restore_id, phase), index)]
    if phase == 'write':  # a dry run's (``plan``) is running, lockless
        keys += [begun_key(snapshot_id, restore_id),
                 locks.Lock.key_of(namespace, kind, restore_id)]
    record, done, *rest = get_all(keys)
    begun, lock = rest or (None, None)
    if record is not None and record.status == RestoreStatus.FINISHED.value:
        # A run that ended it may have died before it freed all.
        ENDS[phase]([record] + get_all(_end_keys(record)[1:]), None)
        return None, None
    if not writing(record, begun):
        return None, None
    if done is not None:
        part_done(record, phase, index, None, None, None)
        return None, None
    lost = phase == 'write' and locks.lost(record, kind, lock)
    if lost:
        restore_failed(lost, restore_id)
        return None, None
    return record, sent


@async_.task
def restore_ranges(restore_id, snapshot_id, namespace, index, kind, first,
                   count):
    """Task: put ``count`` ranges of ``kind`` back; the last one to end
    finishes the restore. Safe to repeat."""
    record, sent = begin_part('write', restore_id, snapshot_id, namespace,
                              index, kind, first, count)
    if record is None:
        return
    found, stops = putback.put_back(putback.read_backups(sent),
                                    record.namespace)
    part_done(record, 'write', index, (kind, first, count),
              part_counts(record, kind, count, found), stops)


def part_counts(record, kind, count, found):
    """A part's ``completion`` counts, by kind: its ``count`` ranges of
    ``kind``, and what putting them back did (or would do): ``found``."""
    kind_index = record.kinds.index(kind)
    counts = {'%d:%s' % (kind_index, name): number
              for name, number in found.items()}
    counts[ranges_count(kind_index)] = count
    return counts


def _summed(counts, name):
    """The sum over the kinds of a job's ``counts`` called ``name``."""
    return sum(number for key, number in counts.items()
               if key.split(':', 1)[1] == name)


@async_.task
def scan_on(restore_id, snapshot_id, phase, namespace, index, kind, first,
            count, stops, counts):
    """Task: go on with the scans for entities the snapshot lacks where
    task ``index`` of a phase (or this task) stopped them
    (``putback.STALE_SCAN``), deleting them (``write``) or counting them
    (``plan``); the last one marks the task's part done."""
    record, sent = begin_part(phase, restore_id, snapshot_id, namespace,
                              index, kind, first, count)
    if record is None:
        return
    found, stops = putback.delete_stale(putback.read_backups(sent),
                                        record.namespace, stops,
                                        counting=phase == 'plan')
    counts['%d:deleted' % record.kinds.index(kind)] += found
    part_done(record, phase, index, (kind, first, count), counts, stops)


#: What ends a phase that puts back or counts, by name: given the record
#: (and its locks) as read when its last part was stored, and the job's
#: summed counts.
ENDS = {}


def _end_keys(record):
    """What an end reads as the last part is stored: the record, and the
    locks of a restore (not a dry run's)."""
    return [record.key()] + ([] if record.dry_run else locks.keys(record))


def part_done(record, phase, index, ranges, counts, stops):
    """Task ``index`` of a phase has put back (or counted) its ``ranges``
    (kind, first, count): its part is done with ``counts`` (None: done
    before), unless its scans for stale entities go on from their
    ``stops``; the last part ends the phase."""
    if stops:
        async_.defer(scan_on, args=(record.id, record.snapshot_id, phase,
                                    record.namespace, index) + ranges + (
                                        stops, counts),
                     on_failure=restore_failed, on_failure_args=(record.id,))
        return
    again = db.get_async(_end_keys(record))
    job, size = record.job(phase), (waves.leaves(record, phase),
                                     waves.fanout(record, phase))
    total = (completion.ascend(job, index, *size) if counts is None else
             completion.mark(job, index, counts, *size))
    if total:
        ENDS[phase](again.get_result(), total)


def _finish(found, counts):
    """The last range is back: the restore (``checking``, its writing
    begun, or ``running`` if checked as it started) has finished, its
    kinds are free. Not in a transaction, as ``_start_writing``: the
    record and the locks, ``found`` as the last marker was stored, are
    written at once, and the checks' markers deleted by key; either may
    land alone, and a run that finds the restore finished deletes what is
    left. The writing's markers stay while the restore is kept: a copy of
    a writing task that comes late finds them and puts nothing back."""
    record, held = found[0], found[1:]
    if record is None:
        return
    gone = locks.mine(record, held) + completion.keys(
        record.job('check'), waves.leaves(record, 'check'),
        waves.fanout(record, 'check'))
    if record.status == RestoreStatus.FINISHED.value:
        delete_all(gone)  # a run before may have died before it did
        return
    if record.status not in (RestoreStatus.CHECKING.value,
                             RestoreStatus.RUNNING.value):
        return
    record.status = RestoreStatus.FINISHED.value
    record.entities = _summed(counts, 'put')
    record.deleted = _summed(counts, 'deleted')
    record.finished = utcnow()

    def end():
        put = db.put_async(record)
        delete_all(gone)
        put.get_result()
    retrying(end)


@async_.task
def restore_failed(message, restore_id):
    """``on_failure`` of a restore's tasks: it goes to error, its kinds
    free (those whose locks it holds: ``locks.free``, never another's)."""
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


PHASES.update(check=check_ranges, write=restore_ranges)
ENDS['write'] = _finish
ACTIONS['restore'] = restore
