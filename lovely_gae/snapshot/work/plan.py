"""A restore's dry run: what it would create, change and delete, per kind.

A dry run runs as tasks, as a restore does, and writes nothing but its own
record. Each task reads its ranges, checked as a restore checks them, reads
the entities now stored under their keys and compares them byte for byte,
and counts the entities now stored within each range's key bounds that the
range lacks (``putback.STALE_SCAN`` keys of a range a task, then a task of
its own goes on from there). When the last task has counted, the plan is on the dry run's
record: ``Snapshot.plan_progress()`` shows it, ``plan`` once finished.
"""
from google.appengine.ext import db

from ... import async_, completion, defaults, entities
from ...base import get_all, retrying, transaction, utcnow
from ...exceptions import RangeCorrupted, SnapshotIncomplete
from .. import names
from ..models import ACTIONS, Snapshot
from ..restores import Restore, RestoreStatus, ranges_count
from . import putback
from .putback import SentBackups, read_backups, records
from .restore import (PHASES, fanout, first_tasks, leaves, new_record,
                      restore_failed, size_tasks)

__all__ = ['start', 'plan_ranges', 'plan_stale']


def start(snap, kinds=None):
    """Start a dry run of a restore of ``kinds`` of ``snap``."""
    snap = Snapshot.get_by_id(snap.id) or snap
    record = new_record(snap, kinds, dry_run=True)
    record.status = RestoreStatus.RUNNING.value
    size_tasks(record)  # a task a range while few, as a restore's
    tasks = first_tasks(record, 'plan') if record.kinds else []
    if not record.kinds:
        record.status, record.plan = RestoreStatus.FINISHED.value, {}
    transaction(_begin, snap.id, record, tasks)


def _begin(snapshot_id, record, tasks):
    snap = Snapshot.get_by_id(snapshot_id)
    snap.plan_id = record.id
    db.put([snap, record])
    async_.defer_many(tasks)


@async_.task
def plan_ranges(restore_id, snapshot_id, index, kind, first, count):
    """Task: count what restoring ``count`` ranges of ``kind`` would do."""
    job = names.restore_job(restore_id, 'plan')
    sent = SentBackups(snapshot_id, kind, first, count)
    record, done = get_all([Restore.key_for(restore_id),
                            completion.key(job, index)])
    if record is None or record.status != RestoreStatus.RUNNING.value:
        return
    if done is not None:  # a run that ended before may not have ascended
        _planned(record, index, None, None, None)
        return
    kind_index = record.kinds.index(kind)
    counts = dict.fromkeys(('%d:%s' % (kind_index, name) for name in
                            ('created', 'changed', 'deleted')), 0)
    counts[ranges_count(kind_index)] = count
    try:
        backups = read_backups(sent)
        for backup in backups:
            for name, value in _plan_range(backup, record.namespace).items():
                counts['%d:%s' % (kind_index, name)] += value
        deleted, stops = putback.delete_stale(backups, record.namespace,
                                              counting=True)
    except (RangeCorrupted, SnapshotIncomplete) as error:
        restore_failed(str(error), restore_id)  # no retry mends it
        return
    counts['%d:deleted' % kind_index] += deleted
    _planned(record, index, (kind, first, count), counts, stops)


@async_.task
def plan_stale(restore_id, snapshot_id, index, kind, first, count, stops,
               counts):
    """Task: go on counting the entities the snapshot lacks where task
    ``index`` of the dry run (or this task) stopped (``STALE_SCAN``)."""
    sent = SentBackups(snapshot_id, kind, first, count)
    record = db.get(Restore.key_for(restore_id))
    if record is None or record.status != RestoreStatus.RUNNING.value:
        return
    deleted, stops = putback.delete_stale(
        read_backups(sent), record.namespace, stops, counting=True)
    counts['%d:deleted' % record.kinds.index(kind)] += deleted
    _planned(record, index, (kind, first, count), counts, stops)


def _planned(record, index, ranges, counts, stops):
    """Task ``index`` has counted its ``ranges`` (kind, first, count):
    its part is done with ``counts`` (None: done before), unless its
    counts of stale entities go on from their ``stops``."""
    if stops:
        async_.defer(plan_stale, args=(record.id, record.snapshot_id,
                                       index) + ranges + (stops, counts),
                     on_failure=restore_failed, on_failure_args=(record.id,))
        return
    job, size = record.job('plan'), (leaves(record, 'plan'),
                                      fanout(record, 'plan'))
    total = (completion.ascend(job, index, *size) if counts is None else
             completion.mark(job, index, counts, *size))
    if total is not None:
        _finish(record.id, total)
        completion.purge(job)


def _plan_range(backup, namespace):
    """What restoring one range would create and change."""
    counts = {'created': 0, 'changed': 0}
    chunk = []

    def compare():
        current = entities.get([reference for _, reference in chunk])
        for (stored, reference), now in zip(chunk, current):
            if now is None:
                counts['created'] += 1
            elif now.SerializeToString() != stored:
                counts['changed'] += 1
        chunk.clear()
    for stored, reference in records(backup, namespace):
        chunk.append((stored, reference))
        if len(chunk) >= defaults.MAX_REQUEST_ENTITIES:
            compare()
    compare()
    return counts


def _finish(restore_id, counts):
    """The plan is counted. Not in a transaction: the tasks that see the
    last range counted at once write the same."""
    record = db.get(Restore.key_for(restore_id))
    if record is None or record.status != RestoreStatus.RUNNING.value:
        return
    record.plan = {kind: {name: counts.get('%d:%s' % (index, name), 0)
                          for name in ('created', 'changed', 'deleted')}
                   for index, kind in enumerate(record.kinds)}
    record.status = RestoreStatus.FINISHED.value
    record.finished = utcnow()
    retrying(record.put)


PHASES['plan'] = plan_ranges
ACTIONS['dry_run'] = start
