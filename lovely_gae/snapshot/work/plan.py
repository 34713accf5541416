"""A restore's dry run: what it would create, change and delete, per kind.

A dry run runs as tasks, as a restore does, and writes nothing but its own
record. Each task reads its ranges, checked as a restore checks them, reads
the entities now stored under their keys and compares them byte for byte,
and counts the entities now stored within each range's key bounds that the
range lacks (``putback.STALE_SCAN`` keys of a range a task, then a task of
its own goes on from there: ``restore.scan_on``). It shares its tasks'
start and end with the restore's writing (``restore.begin_part``,
``part_done``). When the last task has counted, the plan is on the dry
run's record: ``Snapshot.plan_progress()`` shows it, ``plan`` once
finished.
"""
from ... import async_
from ...base import retrying, transaction, utcnow
from ...exceptions import RangeCorrupted, SnapshotIncomplete
from ..models import ACTIONS, Snapshot
from ..restores import RestoreStatus
from . import putback
from .restore import (ENDS, PHASES, begin, begin_part, first_tasks,
                      new_record, part_counts, part_done, restore_failed)
from .waves import size_tasks

__all__ = ['start', 'plan_ranges']


def start(snap, kinds=None):
    """Start a dry run of a restore of ``kinds`` of ``snap``; its id."""
    snap = Snapshot.get_by_id(snap.id) or snap
    record = new_record(snap, kinds, dry_run=True)
    record.status = RestoreStatus.RUNNING.value
    size_tasks(record)  # a task a range while few, as a restore's
    tasks = first_tasks(record, 'plan') if record.kinds else []
    if not record.kinds:
        record.status, record.plan = RestoreStatus.FINISHED.value, {}
    transaction(begin, snap.id, record, tasks)
    return record.id


@async_.task
def plan_ranges(restore_id, snapshot_id, namespace, index, kind, first,
                count):
    """Task: count what restoring ``count`` ranges of ``kind`` would do."""
    record, sent = begin_part('plan', restore_id, snapshot_id, namespace,
                              index, kind, first, count)
    if record is None:
        return
    try:
        found, stops = putback.put_back(putback.read_backups(sent),
                                        record.namespace, counting=True)
    except (RangeCorrupted, SnapshotIncomplete) as error:
        restore_failed(str(error), restore_id)  # no retry mends it
        return
    part_done(record, 'plan', index, (kind, first, count),
              part_counts(record, kind, count, found), stops)


def _finish(found, counts):
    """The plan is counted, ``found`` (the record) as read when the last
    part was stored: it goes on the record, in one put. Not in a
    transaction: the tasks that see the last range counted at once (a
    wave's, at many workers) write the same, and transactions on the one
    record would collide. A dry run holds no lock: one that ends it after
    its snapshot was deleted stores the record back, which the snapshot's
    last purge deletes (``deleting.forget``). Its markers stay while the
    record is kept, as a restore's writing's do, and go with it: deleted
    here, by every task that ends it, they cost each a call more."""
    record = found[0]
    if record is None or record.status != RestoreStatus.RUNNING.value:
        return
    record.plan = {kind: {name: counts.get('%d:%s' % (index, name), 0)
                          for name in ('created', 'changed', 'deleted')}
                   for index, kind in enumerate(record.kinds)}
    record.status = RestoreStatus.FINISHED.value
    record.finished = utcnow()
    retrying(record.put)


PHASES['plan'] = plan_ranges
ENDS['plan'] = _finish
ACTIONS['dry_run'] = start
