"""``python -m benchmarks --simulate``: snapshot and restore as production
would run them, in virtual time, against an ideal range-parallel reader.

Every run starts from a datastore file in a fresh testbed of the SDK's
stub, wrapped in the latency model (``simstub``), with K workers taking the
library's tasks (``simwork``), all in virtual time (``simclock``). What is
measured, per size and K:

- snapshot: ``api.create_snapshot([KIND])`` and every task, until no work
  is left; checked finished, holding every entity, the queue empty;
- restore: some entities deleted, changed and added first, then
  ``restore()`` and every task; checked finished and exact;
- the ideal reader, same testbed, same latency model: K threads, each
  taking the next range (bounds computed untimed: every ``RANGE``-th key),
  reading it with one key-range query, compressing it with bz2 (level 9,
  delimited records, as the library stores them) and putting one blob
  entity; for the restore, K threads each putting back ``RESTORE_BATCH``
  entities a call;
- in a separate K=1 pass with tracemalloc on (never in the timed runs),
  the peak memory of each task.
"""
import bz2
import itertools
import os
import shutil
import tracemalloc
from unittest import mock

from google.appengine.api import datastore
from google.appengine.ext import db

from lovely_gae import async_, defaults, entities
from lovely_gae.snapshot.models import Status
from lovely_gae.snapshot.restores import RestoreStatus
from lovely_gae.snapshot import api, storage

from . import data, floors, simclock, simstub, simwork

__all__ = ['RANGE', 'RESTORE_BATCH', 'Plan', 'measure_size']

#: Entities per range of the ideal snapshot (the library's batch size).
RANGE = 200
#: Entities per put of the ideal restore.
RESTORE_BATCH = floors.RESTORE_BATCH


class Plan:
    """What to run: sizes, worker counts, modes, where files go."""

    def __init__(self, sizes, workers, mode, workdir, log, poll_workers=16,
                 max_tasks=20, interval=1.0, ideal_read='query', latency=None,
                 memory=True, restore_max=None):
        self.sizes = sizes
        self.workers = workers
        self.mode = mode
        self.workdir = workdir
        self.log = log
        self.poll_workers = poll_workers
        self.max_tasks = max_tasks
        self.interval = interval
        self.ideal_read = ideal_read
        self.latency = latency or simstub.Latency()
        self.memory = memory
        self.restore_max = restore_max

    def restores(self, size):
        """Whether restores are measured at ``size``."""
        return self.restore_max is None or size <= self.restore_max

    def path(self, name):
        return os.path.join(self.workdir, name)


def _sim(plan, memory=None):
    return simstub.Sim(simclock.Scheduler(), plan.latency, memory)


def _simulate(plan, client, workers, mode='push', bodies=None, memory=None):
    # Configured as docs/production.rst advises: as many shards as the
    # queue runs tasks at once.
    with _sim(plan, memory) as sim, mock.patch.object(
            defaults, 'SHARDS', workers):
        return simwork.run(sim, client, workers, mode, plan.max_tasks,
                           plan.interval, bodies)


def _state():
    """``{encoded key: EntityProto}`` of every entity of the kind."""
    return {pb.key.SerializeToString(): pb
            for pb in entities.iter_range(data.KIND, '')}


def _leftovers():
    """Why the queue is not clean at the end of a run, or None."""
    queued = async_.count_tasks()
    failed = len(async_.get_failed_tasks())
    if queued or failed:
        return '%d tasks left in the queue, %d failed' % (queued, failed)
    return None


def _check(result, problems):
    stats = result['stats']
    problems = [p for p in problems if p]
    problems += stats.errors
    left = _leftovers()
    if left:
        problems.append(left)
    result['problems'] = problems


def _summary(result, kind, size, workers, mode):
    stats = result['stats']
    return {'measurement': kind, 'size': size, 'workers': workers,
            'mode': mode, 'seconds': result['seconds'],
            'client_seconds': result['client_seconds'],
            'counts': result['counts'], 'tasks': stats.tasks,
            'not_ran': stats.not_ran, 'pushes': stats.pushes,
            'pushed': stats.pushed, 'duplicates': stats.duplicates,
            'redelivered': stats.redelivered,
            'idle_calls': stats.idle_calls, 'idle_polls': stats.idle_polls,
            'work_calls': stats.work_calls,
            'longest_task': max(stats.task_seconds, default=0.0),
            'problems': result.get('problems', [])}


def _snapshot(plan, size, workers, mode, source, save_to=None,
              memory=None):
    with data.testbed(source) as bed:
        result = _simulate(plan, lambda: api.create_snapshot([data.KIND]),
                           workers, mode, memory=memory)
        problems = []
        snap = result['result']
        if snap is None:
            problems.append('no snapshot was created')
        else:
            snap = api.get_snapshot(snap.id)
            held = snap.progress()['entities']
            if snap.status != Status.FINISHED or held != size:
                problems.append('snapshot %s ended %s holding %s of %d '
                                'entities: %s' % (snap.id, snap.status, held,
                                                  size, snap.error))
            result['snapshot_id'] = snap.id
        _check(result, problems)
        if save_to and not result['problems']:
            data.save(bed)
    return result


def _damage(size):
    """Delete, change and add a few entities of the kind; untimed."""
    keys = [datastore.Key.from_path(data.KIND, number)
            for number in range(1, size + 1)]
    datastore.Delete(keys[::97])
    changed = [e for e in datastore.Get(keys[45::89]) if e is not None]
    for entity in changed:
        entity['visits'] = -1
    extra = []
    for number in range(1, 1 + max(1, size // 400)):
        entity = datastore.Entity(data.KIND, id=size + number)
        entity['name'] = 'not in the snapshot'
        extra.append(entity)
    datastore.Put(changed + extra)
    data.settle()


def _restore(plan, size, workers, mode, source, snapshot_id, memory=None):
    with data.testbed(source):
        before = _state()
        _damage(size)
        result = _simulate(
            plan, lambda: api.get_snapshot(snapshot_id).restore(), workers,
            mode, memory=memory)
        progress = api.get_snapshot(snapshot_id).restore_progress() or {}
        problems = []
        if progress.get('status') != RestoreStatus.FINISHED:
            problems.append('restore ended %s: %s' % (
                progress.get('status'), progress.get('error')))
        after = _state()
        if after != before:
            wrong = sum(1 for k, pb in before.items() if after.get(k) != pb)
            problems.append('restore not exact: %d entities differ or are '
                            'missing, %d extra' % (
                                wrong, len(set(after) - set(before))))
        _check(result, problems)
    return result


def _ideal_snapshot(plan, size, workers, source):
    with data.testbed(source):
        keys = list(entities.iter_range_keys(data.KIND, ''))
        ranges = [keys[i:i + RANGE] for i in range(0, len(keys), RANGE)]
        bounds = [entities.key(r[0]) for r in ranges] + [None]
        taken = itertools.count()
        stored = []

        def read(position):
            if plan.ideal_read == 'query':
                return list(entities.iter_range(
                    data.KIND, '', bounds[position], bounds[position + 1],
                    batch_size=RANGE + 1))
            return entities.get(ranges[position])

        def body(part):
            for position in taken:
                if position >= len(ranges):
                    return
                raw = b''.join(storage.varint(len(r)) + r for r in (
                    pb.SerializeToString() for pb in read(position)))
                blob = bz2.compress(raw, 9)
                db.put(floors.FloorRange(key_name='range-%08d' % position,
                                         data=db.Blob(blob)))
                stored.append(len(raw))
        result = _simulate(plan, None, workers, bodies=[body] * workers)
        problems = []
        if len(stored) != len(ranges):
            problems.append('ideal stored %d of %d ranges' % (
                len(stored), len(ranges)))
        result['problems'] = problems + result['stats'].errors
    return result


def _ideal_restore(plan, size, workers, source):
    protos = [entities.EntityProto.FromString(record)
              for record in data.dataset(size)]
    chunks = [protos[i:i + RESTORE_BATCH]
              for i in range(0, len(protos), RESTORE_BATCH)]
    with data.testbed(source):
        taken = itertools.count()

        def body(part):
            for position in taken:
                if position >= len(chunks):
                    return
                entities.put(chunks[position])
        result = _simulate(plan, None, workers, bodies=[body] * workers)
        result['problems'] = result['stats'].errors + (
            [] if data.count() == size else
            ['ideal restore left %d entities, not %d' % (data.count(), size)])
    return result


def _memory_pass(plan, size, base_file, snap_file, snapshot_id):
    """Peak memory of each task at K=1, snapshot and restore."""
    peaks = {}
    tracemalloc.start()
    try:
        names = ('snapshot', 'restore') if plan.restores(size) else (
            'snapshot',)
        for name in names:
            tracker = simstub.MemoryTracker()
            if name == 'snapshot':
                result = _snapshot(plan, size, 1, 'push', base_file,
                                   memory=tracker)
            else:
                result = _restore(plan, size, 1, 'push', snap_file,
                                  snapshot_id, memory=tracker)
            peak, task = max(tracker.peaks, default=(0, None))
            peaks[name] = {'peak': peak, 'task': task,
                           'tasks': len(tracker.peaks),
                           'problems': result['problems']}
            plan.log('memory %-8s %d: peak %.1f KiB in %s' % (
                name, size, peak / 1024, task))
    finally:
        tracemalloc.stop()
    return peaks


def measure_size(plan, size):
    """Every run at one size; returns ``(rows, memory)``."""
    base_file = plan.path('base.%d' % size)
    snap_file = plan.path('snapshot.%d' % size)
    with data.testbed(base_file) as bed:
        data.fill(size)
        data.settle()
        data.save(bed)
    rows = []

    def record(kind, workers, mode, result):
        row = _summary(result, kind, size, workers, mode)
        rows.append(row)
        plan.log('%-16s %7d K=%-3d %-4s %9.2f s virtual, %5d calls, %4d '
                 'tasks%s' % (kind, size, workers, mode, row['seconds'],
                              row['counts']['calls'], row['tasks'],
                              ('  PROBLEMS: %s' % row['problems'])
                              if row['problems'] else ''))
    modes = ['poll'] if plan.mode == 'poll' else ['push']
    snapshot_id = None
    for workers in plan.workers:
        for mode in modes:
            first = (workers, mode) == (plan.workers[0], modes[0])
            if first:  # its snapshot is the one every restore restores
                shutil.copyfile(base_file, snap_file)
            result = _snapshot(plan, size, workers, mode,
                               snap_file if first else base_file,
                               save_to=first)
            if first and not result['problems']:
                snapshot_id = result['snapshot_id']
            record('snapshot', workers, mode, result)
        record('ideal snapshot', workers, 'push',
               _ideal_snapshot(plan, size, workers, base_file))
    extra = plan.mode == 'both' and plan.poll_workers
    if extra:
        record('snapshot', plan.poll_workers, 'poll', _snapshot(
            plan, size, plan.poll_workers, 'poll', base_file))
    if snapshot_id is None:
        plan.log('no finished snapshot at %d: restore and memory not '
                 'measured' % size)
        return rows, None
    for workers in plan.workers if plan.restores(size) else ():
        for mode in modes:
            record('restore', workers, mode, _restore(
                plan, size, workers, mode, snap_file, snapshot_id))
        record('ideal restore', workers, 'push',
               _ideal_restore(plan, size, workers, base_file))
    if extra and plan.restores(size):
        record('restore', plan.poll_workers, 'poll', _restore(
            plan, size, plan.poll_workers, 'poll', snap_file, snapshot_id))
    memory = None
    if plan.memory:
        memory = _memory_pass(plan, size, base_file, snap_file, snapshot_id)
    return rows, memory
