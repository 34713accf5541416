"""The simulated runs' tables, their targets (issue 11), and their section
of ``RESULTS.md``."""
from . import report

__all__ = ['HEADING', 'TARGETS', 'targets', 'section', 'text']

HEADING = report.SIMULATED_HEADING

#: Issue 11's targets for the simulated runs.
TARGETS = {
    'speedup_16': 8.0,            # T(1) / T(16), at least
    'of_ideal_16': 0.70,          # our speedup / the ideal's, at least
    'of_ideal_64': 0.60,
    'snapshot_calls': 15, 'snapshot_reads': 1020, 'snapshot_writes': 30,
    'restore_reads': 1050, 'restore_writes': 1050,   # per 1,000 entities
    'idle_of_work': 1.0,          # idle polling calls / work calls, at most
    'collisions': 0.02,           # collided commits / commit attempts, under
    'memory_growth': 1.2,         # peak task memory, largest / smallest size
}


def _find(rows, measurement, size, workers, mode):
    for row in rows:
        if (row['measurement'], row['size'], row['workers'],
                row['mode']) == (measurement, size, workers, mode):
            return row
    return None


def _headline(result):
    return 'poll' if result['setup']['mode'] == 'poll' else 'push'


def _speed(result):
    """Rows ``(name, size, K, ours, speedup, ideal, ideal speedup, share)``."""
    rows, mode, out = result['rows'], _headline(result), []
    for name in ('snapshot', 'restore'):
        for size in result['setup']['sizes']:
            one = _find(rows, name, size, 1, mode)
            one_ideal = _find(rows, 'ideal ' + name, size, 1, 'push')
            for workers in result['setup']['workers']:
                ours = _find(rows, name, size, workers, mode)
                ideal = _find(rows, 'ideal ' + name, size, workers, 'push')
                if ours is None:
                    continue
                speedup = (one['seconds'] / ours['seconds']
                           if one and ours['seconds'] else None)
                ideal_speedup = (one_ideal['seconds'] / ideal['seconds']
                                 if one_ideal and ideal and ideal['seconds']
                                 else None)
                share = (speedup / ideal_speedup
                         if speedup and ideal_speedup else None)
                out.append((name, size, workers, ours,
                            speedup, ideal, ideal_speedup, share))
    return out


def _per_1000(row, field):
    value = (row['counts']['calls'] if field == 'calls'
             else row['counts'][field])
    return value * 1000.0 / row['size']


def _collision_rate(row):
    counts = row['counts']
    attempts = counts['commits'] + counts['collisions']
    return counts['collisions'] / attempts if attempts else 0.0


def targets(result):
    """``(target, size, measured, required, passed)`` for each target whose
    measurements were made."""
    out, rows, mode = [], result['rows'], _headline(result)
    speed = {(s[0], s[1], s[2]): s for s in _speed(result)}
    for name in ('snapshot', 'restore'):
        for size in result['setup']['sizes']:
            found = speed.get((name, size, 16))
            if found and found[4] is not None:
                out.append(('%s speedup, 16 workers over 1' % name, size,
                            found[4], '>= %g' % TARGETS['speedup_16'],
                            found[4] >= TARGETS['speedup_16']))
            for workers in (16, 64):
                found = speed.get((name, size, workers))
                required = TARGETS['of_ideal_%d' % workers]
                if found and found[7] is not None:
                    out.append(('%s speedup at %d workers, share of the '
                                'ideal\'s' % (name, workers), size, found[7],
                                '>= %g' % required, found[7] >= required))
    for name, limits in (('snapshot', ('calls', 'reads', 'writes')),
                         ('restore', ('reads', 'writes'))):
        for size in result['setup']['sizes']:
            row = _find(rows, name, size, 1, mode)
            for field in limits if row else ():
                limit = TARGETS['%s_%s' % (name, field)]
                value = _per_1000(row, field)
                out.append(('%s %s per 1,000 entities, 1 worker'
                            % (name, field), size, value, '<= %g' % limit,
                            value <= limit))
    for name in ('snapshot', 'restore'):
        for size in result['setup']['sizes']:
            poll = _find(rows, name, size, 16, 'poll')
            if poll and poll['work_calls']:
                share = poll['idle_calls'] / poll['work_calls']
                out.append(('%s: idle polling calls / work calls, 16 '
                            'workers polling' % name, size, share,
                            '<= %g' % TARGETS['idle_of_work'],
                            share <= TARGETS['idle_of_work']))
            for row in (_find(rows, name, size, 16, 'push'), poll):
                if row:
                    rate = _collision_rate(row)
                    out.append(('%s: commits that collide, 16 workers (%s)'
                                % (name, row['mode']), size, rate,
                                '< %g' % TARGETS['collisions'],
                                rate < TARGETS['collisions']))
    memory = result.get('memory') or {}
    sizes = sorted(s for s in memory if memory[s])
    if len(sizes) >= 2:
        for name in ('snapshot', 'restore'):
            if name not in memory[sizes[0]] or name not in memory[sizes[-1]]:
                continue
            low, high = memory[sizes[0]][name], memory[sizes[-1]][name]
            if low['peak']:
                growth = high['peak'] / low['peak']
                out.append(('peak memory of one %s task, %d / %d entities'
                            % (name, sizes[-1], sizes[0]), sizes[-1], growth,
                            '<= %g' % TARGETS['memory_growth'],
                            growth <= TARGETS['memory_growth']))
    bad = [r for r in rows if r['problems']]
    out.append(('every run finished, exact, queue empty', None,
                len(rows) - len(bad), '%d of %d' % (len(rows), len(rows)),
                not bad))
    return out


def _f(value, digits=2):
    return '-' if value is None else '%.*f' % (digits, value)


def _size(size):
    return '-' if size is None else '{:,}'.format(size)


def _speed_table(result):
    header = ('measurement', 'size', 'K', 'ours', 'speedup', 'ideal',
              'ideal speedup', 'share of ideal', 'ours / ideal time',
              'tasks', 'calls')
    lines = []
    for name, size, workers, ours, speedup, ideal, ideal_speedup, share \
            in _speed(result):
        lines.append((name, _size(size), str(workers),
                      '%.2f s' % ours['seconds'], _f(speedup),
                      '%.2f s' % ideal['seconds'] if ideal else '-',
                      _f(ideal_speedup), _f(share),
                      _f(ours['seconds'] / ideal['seconds'])
                      if ideal and ideal['seconds'] else '-',
                      str(ours['tasks']), str(ours['counts']['calls'])))
    return report._layout(header, lines, True)


def _work_table(result):
    header = ('measurement', 'size', 'calls', 'reads', 'keys returned',
              'writes (library / user)', 'commits', 'collisions',
              'memcache calls', 'task pushes', 'calls by method')
    lines = []
    for row in result['rows']:
        if row['workers'] != 1 or row['mode'] != _headline(result):
            continue
        c, per = row['counts'], 1000.0 / row['size']
        lines.append((
            row['measurement'], _size(row['size']), _f(c['calls'] * per, 1),
            _f(c['reads'] * per, 1), _f(c['keys_returned'] * per, 1),
            '%s (%s / %s)' % (_f(c['writes'] * per, 1),
                              _f(c['writes_library'] * per, 1),
                              _f(c['writes_user'] * per, 1)),
            _f(c['commits'] * per, 2), _f(c['collisions'] * per, 2),
            _f(c['memcache_calls'] * per, 1), _f(row['pushes'] * per, 1),
            ', '.join('%s %s' % (m, _f(n * per, 1))
                      for m, n in c['by_method'].items())))
    return report._layout(header, lines, True)


def _contention_table(result):
    header = ('measurement', 'size', 'K', 'mode', 'seconds', 'calls',
              'commits', 'collided', 'rate', 'txn retries', 'idle polls',
              'idle calls', 'work calls', 'pushes that ran nothing')
    lines = []
    for row in result['rows']:
        if row['measurement'].startswith('ideal'):
            continue
        c = row['counts']
        lines.append((row['measurement'], _size(row['size']),
                      str(row['workers']), row['mode'],
                      '%.2f' % row['seconds'], str(c['calls']),
                      str(c['commits']), str(c['collisions']),
                      '%.1f%%' % (100 * _collision_rate(row)),
                      str(c['txn_retries']), str(row['idle_polls']),
                      str(row['idle_calls']), str(row['work_calls']),
                      str(row['not_ran'])))
    return report._layout(header, lines, True)


def _memory_table(result):
    header = ('size', 'snapshot: peak of one task', 'in task',
              'restore: peak of one task', 'in task')
    lines = []
    for size, peaks in sorted((result.get('memory') or {}).items()):
        if not peaks:
            continue
        cells = [_size(size)]
        for name in ('snapshot', 'restore'):
            if name not in peaks:
                cells += ['-', '-']
                continue
            cells += ['%.1f KiB' % (peaks[name]['peak'] / 1024),
                      '`%s`' % (peaks[name]['task'] or '-').split('#')[0]]
        lines.append(tuple(cells))
    return report._layout(header, lines, True)


def _targets_table(result):
    header = ('target', 'size', 'measured', 'required', 'result')
    lines = [(name, _size(size),
              _f(value, 3) if isinstance(value, float) else str(value),
              required, 'PASS' if passed else 'FAIL')
             for name, size, value, required, passed in targets(result)]
    return report._layout(header, lines, True)


def _checks_table(result):
    header = ('check', 'expected', 'measured', 'ok')
    lines = [(c['check'], c['expected'], c['measured'],
              'yes' if c['ok'] else 'NO') for c in result.get('checks', [])]
    return report._layout(header, lines, True)


def section(result):
    """The ``Simulated production`` section of ``RESULTS.md``."""
    setup = result['setup']
    lines = [
        HEADING, '',
        'Written by `%s` on %s (lovely_gae commit %s). Times are virtual '
        'seconds: each thread\'s own Python CPU plus the latency model, %s; '
        'the stub\'s CPU is not counted. Workers: %s. Sizes %s; workers '
        '%s. See `benchmarks/simulate.py` for what each run does.' % (
            setup['command'], result['machine']['date'],
            result['machine']['lovely_gae commit'], setup['latency'],
            setup['workers_mode'], ', '.join(map(_size, setup['sizes'])),
            ', '.join(map(str, setup['workers']))), '',
        '### Targets', '', _targets_table(result), '',
        '### Speed: ours and the ideal range-parallel reader, same run', '',
        'Speedup is T(1) / T(K) of the same side; share of ideal is our '
        'speedup over the ideal\'s.', '', _speed_table(result), '',
        '### Datastore work per 1,000 entities, one worker', '',
        _work_table(result), '',
        '### Commits, collisions and polling, every run', '',
        _contention_table(result), '',
        '### Peak memory of one task (K=1, tracemalloc, untimed pass)', '',
        _memory_table(result), '',
        '### The instrument\'s own checks', '', _checks_table(result), '',
        '### How to read this', '']
    lines += ['- %s' % note for note in result['notes']]
    problems = [(r['measurement'], r['size'], r['workers'], r['mode'], p)
                for r in result['rows'] for p in r['problems']]
    if problems or result.get('errors'):
        lines += ['', '### Problems', '']
        lines += ['- %s %s K=%s %s: %s' % (m, _size(s), k, mode,
                                           p.strip().replace('\n', ' | '))
                  for m, s, k, mode, p in problems[:40]]
        lines += ['- %s' % e for e in result.get('errors', [])]
    return '\n'.join(lines) + '\n'


def text(result):
    """A plain-text summary for the terminal."""
    return '\n'.join([
        _targets_table(result), '', _speed_table(result), '',
        _work_table(result), '', _contention_table(result), '',
        _memory_table(result), '', _checks_table(result)])
