"""The measurements of issue 5: ours and its floor, side by side.

Each side runs in a fresh testbed holding the same data. Every function
returns rows (dicts) that ``report`` prints; see ``row`` for their keys.
"""
import json
import os
import subprocess
import sys

from lovely_gae import async_, entities
from lovely_gae.snapshot.models import Status
from lovely_gae.snapshot.restores import RestoreStatus
from lovely_gae.snapshot import api, client

from . import data, floors, noop, timing

__all__ = ['TARGETS', 'Context', 'snapshot', 'download', 'memory',
           'restore', 'queue', 'scaling']

#: Issue 5's targets: the largest ratio of ours to its floor (or reference).
TARGETS = {'snapshot': 1.25, 'restore': 1.25, 'download': 1.15,
           'queue overhead': 3.0, 'scaling': 1.15, 'memory': 1.0,
           'size': 1.0}
MIB = 1024 * 1024


class Context:
    """What every measurement shares: budgets, repeats, where files go."""

    def __init__(self, budget, setup_budget, workdir, repeats=None,
                 log=None):
        self.budget = budget
        self.setup_budget = setup_budget
        self.workdir = workdir
        self._repeats = repeats
        self.log = log or (lambda text: None)

    def repeats(self, size):
        """Runs per side: the small sizes are repeated, the median counts."""
        if self._repeats:
            return self._repeats
        return 3 if size <= 20000 else 1

    def path(self, name):
        return os.path.join(self.workdir, name)

    def timed(self, label, func):
        sample = timing.timed(func, self.budget)
        self.log('%-28s %8.2f s%s' % (label, sample.seconds, (
            '  OVER BUDGET (%.0f%% done)' % (100 * sample.fraction))
            if sample.over_budget else ''))
        return sample


def row(measurement, size, ours, floor, unit, target_key=None, note='',
        ours_samples=(), floor_samples=(), over_budget=False,
        ratio_lower=None):
    """One line of the table; ``ratio`` is ours over the floor/reference."""
    ratio = ours / floor if ours is not None and floor else None
    target = TARGETS.get(target_key) if target_key else None
    met = None
    if target is not None and ratio is not None:
        met = ratio <= target and not over_budget
    elif target is not None and over_budget:
        met = False
    return {'measurement': measurement, 'size': size, 'ours': ours,
            'floor': floor, 'unit': unit, 'ratio': ratio,
            'ratio_lower': ratio_lower, 'target': target, 'met': met,
            'over_budget': over_budget, 'note': note,
            'repeats': max(len(ours_samples), len(floor_samples)) or None,
            'ours_samples': [round(s.seconds, 6) for s in ours_samples],
            'floor_samples': [round(s.seconds, 6) for s in floor_samples]}


def _timing_row(measurement, size, ours, floor, per=1, note=''):
    """A row of two sets of timed samples (seconds, divided by ``per``)."""
    ours_t, ours_lower, over = timing.summarize(ours)
    floor_t, _, floor_over = timing.summarize(floor)
    notes = [note] if note else []
    lower = None
    if over:
        lower = ours_lower / floor_t if floor_t and not floor_over else None
        done = min(s.fraction for s in ours)
        notes.append('ours over budget after %.1f s at %.0f%% done; time '
                     'extrapolated' % (ours_lower, 100 * done))
    if floor_over:
        notes.append('floor over budget; time extrapolated')
    return row(measurement, size, ours_t and ours_t / per,
               floor_t and floor_t / per, 's' if per == 1 else 's/each',
               measurement, '; '.join(notes), ours, floor,
               over_budget=over, ratio_lower=lower)


def _ours_snapshot(budget, size, holder):
    snap = api.create_snapshot([data.KIND])
    holder['id'] = snap.id
    timing.drain(budget)
    data.settle()
    budget.stop()
    return _finished_snapshot(budget, snap.id, size)


def _finished_snapshot(budget, snapshot_id, size):
    snap = api.get_snapshot(snapshot_id)
    progress = snap.progress()
    if snap.status != Status.FINISHED:
        total = progress['ranges_total']
        if budget.remaining() <= 0.01 * budget.seconds:
            raise timing.OverBudget(budget.elapsed(), (
                progress['ranges_done'] / total) if total else 0.0)
        raise RuntimeError('snapshot %d ended %s: %s' % (
            snap.id, snap.status, snap.error))
    if progress['entities'] != size:
        raise RuntimeError('snapshot %d holds %d entities, not %d' % (
            snap.id, progress['entities'], size))
    return {'id': snap.id, 'stored': progress['bytes'],
            'ranges': progress['ranges_total']}


def snapshot(ctx, size):
    """``create_snapshot`` plus every task, against the floor's scan.

    Returns ``(rows, info)``: ``info`` names the datastore file that holds
    the data and our finished snapshot (None if there is none), which the
    download, memory and restore measurements load.
    """
    ours, floor = [], []
    info = stored = floor_stored = None
    for repeat in range(ctx.repeats(size)):
        if not (ours and ours[-1].over_budget):
            path = ctx.path('datastore.%d' % size) if repeat == 0 else None
            with data.testbed(path) as bed:
                data.fill(size)
                data.settle()
                holder = {}
                sample = ctx.timed('snapshot %d ours' % size,
                                   lambda b: _ours_snapshot(b, size, holder))
                ours.append(sample)
                if repeat == 0:
                    value = sample.value or _finish_untimed(ctx, holder, size)
                    if value is not None:
                        data.save(bed)
                        stored = value['stored']
                        info = dict(value, file=path)
        with data.testbed():
            data.fill(size)
            data.settle()
            sample = ctx.timed('snapshot %d floor' % size,
                               lambda b: floors.snapshot(b, size))
            floor.append(sample)
            if floor_stored is None and not sample.over_budget:
                floor_stored = sample.value
    rows = [_timing_row('snapshot', size, ours, floor)]
    rows.append(row('size', size, stored, floor_stored, 'bytes', 'size',
                    'reference: the seed\'s format, bz2 (level 9) of a '
                    'pickled list of the encoded entities per 200'))
    return rows, info


def _finish_untimed(ctx, holder, size):
    """Let an over-budget snapshot finish, so the next measurements have it."""
    if 'id' not in holder:
        return None
    ctx.log('snapshot %d: finishing it untimed (up to %.0f s more)'
            % (size, ctx.setup_budget))
    budget = timing.Budget(ctx.setup_budget)
    timing.drain(budget)
    try:
        return _finished_snapshot(budget, holder['id'], size)
    except timing.OverBudget:
        ctx.log('snapshot %d: not finished, later measurements skipped'
                % size)
        return None


def _ours_download(budget, snapshot_id, out_dir):
    def progress(event, **info):
        if event == 'range':
            budget.check((info['position'] - 1) / info['total'])
    path = client.download_snapshot(out_dir, snapshot_id, progress=progress)
    budget.stop()
    return path


def download(ctx, size, info):
    """``download_snapshot`` against the blobs decompressed to a file."""
    ours, floor = [], []
    file_size = None
    out_dir = ctx.path('download')
    os.makedirs(out_dir, exist_ok=True)
    for _ in range(ctx.repeats(size)):
        if not (ours and ours[-1].over_budget):
            with data.testbed(info['file']):
                sample = ctx.timed('download %d ours' % size, lambda b:
                                   _ours_download(b, info['id'], out_dir))
                ours.append(sample)
                if sample.value:
                    file_size = os.path.getsize(sample.value)
                    os.unlink(sample.value)
        with data.testbed(info['file']):
            path = os.path.join(out_dir, 'floor')
            floor.append(ctx.timed('download %d floor' % size, lambda b:
                                   floors.download(b, info['id'], path)))
            os.unlink(path)
    info['file_size'] = file_size
    return [_timing_row('download', size, ours, floor)]


def memory(ctx, size, info):
    """Peak resident memory of a download in a child process vs its file."""
    out_dir = ctx.path('memory')
    os.makedirs(out_dir, exist_ok=True)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [root, os.environ.get('PYTHONPATH')])))
    command = [sys.executable, '-m', 'benchmarks._download_child',
               '--datastore', info['file'], '--snapshot', str(info['id']),
               '--out', out_dir]
    done = subprocess.run(command, cwd=root, env=env, capture_output=True,
                          text=True, timeout=ctx.budget + ctx.setup_budget)
    if done.returncode != 0:
        raise RuntimeError('download child failed:\n' + done.stderr[-3000:])
    result = json.loads(done.stdout.strip().splitlines()[-1])
    ctx.log('memory %d: baseline %.1f MiB, peak %.1f MiB, file %.1f MiB' % (
        size, result['baseline_rss'] / MIB, result['peak_rss'] / MIB,
        result['file_size'] / MIB))
    allowed = result['file_size'] + 64 * MIB
    method = result['peak_method']
    net = result['peak_rss'] - result['baseline_rss']
    return [
        row('memory (download, net)', size, net / MIB, allowed / MIB, 'MiB',
            'memory', 'peak RSS during the download minus RSS after loading '
            'the datastore (%s); the target applies to this; reference: '
            'file size + 64 MiB' % method),
        row('memory (download, raw)', size, result['peak_rss'] / MIB,
            allowed / MIB, 'MiB', None,
            'peak RSS of the process during the download, datastore '
            'included (whole run incl. loading: %.0f MiB)'
            % (result['maxrss_whole'] / MIB)),
    ]


def _ours_restore(budget, snapshot_id):
    api.get_snapshot(snapshot_id).restore()
    timing.drain(budget)
    data.settle()
    budget.stop()
    progress = api.get_snapshot(snapshot_id).restore_progress()
    if progress['status'] != RestoreStatus.FINISHED:
        total = progress['ranges_total']
        if budget.remaining() <= 0.01 * budget.seconds:
            raise timing.OverBudget(budget.elapsed(), (
                progress['ranges_done'] / total) if total else 0.0)
        raise RuntimeError('restore ended %s: %s' % (progress['status'],
                                                     progress['error']))


def _check_count(size, what):
    found = data.count()
    if found != size:
        raise RuntimeError('%s left %d entities, not %d' % (what, found, size))


def restore(ctx, size, info):
    """``restore()`` plus its tasks after deleting every entity, against
    putting the same entities back, ``floors.RESTORE_BATCH`` a call."""
    ours, floor = [], []
    protos = [entities.EntityProto.FromString(record)
              for record in data.dataset(size)]
    for _ in range(ctx.repeats(size)):
        if not (ours and ours[-1].over_budget):
            with data.testbed(info['file']):
                data.delete_all()
                data.settle()
                sample = ctx.timed('restore %d ours' % size, lambda b:
                                   _ours_restore(b, info['id']))
                ours.append(sample)
                if not sample.over_budget:
                    _check_count(size, 'restore')
        with data.testbed(info['file']):
            data.delete_all()
            data.settle()
            floor.append(ctx.timed('restore %d floor' % size,
                                   lambda b: floors.restore(b, protos)))
            _check_count(size, 'floor restore')
    return [_timing_row('restore', size, ours, floor)]


def _queue(budget, count):
    for number in range(count):
        async_.defer(noop, args=(number,))
        budget.check(0.0)
    ran = timing.drain(budget)
    data.settle()
    budget.stop()
    if ran < count:
        raise timing.OverBudget(budget.elapsed(), ran / count)
    return ran


def queue(ctx, count, repeats):
    """``defer(noop)`` plus ``run_tasks`` per task, against one small put."""
    ours, floor = [], []
    for _ in range(repeats):
        with data.testbed():
            ours.append(ctx.timed('queue %d tasks' % count,
                                  lambda b: _queue(b, count)))
        with data.testbed():
            floor.append(ctx.timed('queue floor %d puts' % count,
                                   lambda b: floors.small_puts(b, count)))
    result = _timing_row('queue overhead', None, ours, floor, per=count,
                         note='%d tasks, each against one put of a small '
                              'entity' % count)
    result['unit'] = 's/task'
    return [result]


def scaling(rows):
    """Time per entity at the largest size against that at the smallest."""
    out = []
    for name in ('snapshot', 'restore'):
        sized = sorted((r for r in rows if r['measurement'] == name
                        and r['ours'] is not None), key=lambda r: r['size'])
        if len(sized) < 2:
            continue
        small, large = sized[0], sized[-1]
        label = '%s %d vs %d' % (name, large['size'], small['size'])
        for side, measurement, target in (
                ('ours', 'scaling ' + label, 'scaling'),
                ('floor', 'scaling %s (floor, info)' % label, None)):
            if large[side] is None or small[side] is None:
                continue
            result = row(measurement, large['size'],
                         large[side] / large['size'],
                         small[side] / small['size'], 's/entity', target,
                         'per-entity time at the larger size (ours column) '
                         'against the smaller (floor / ref column)',
                         over_budget=large['over_budget'] and side == 'ours')
            out.append(result)
    return out
