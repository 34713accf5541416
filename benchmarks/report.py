"""The table, the JSON and ``RESULTS.md``: ratios first, times beside them."""
import datetime
import importlib.metadata
import os
import platform
import subprocess

__all__ = ['machine', 'table', 'codec_table', 'notes', 'write_results',
           'write_section', 'default_path', 'CHANGES_HEADING',
           'SIMULATED_HEADING']

CHANGES_HEADING = '## What each change bought'
#: The section a ``--simulate`` run writes (see ``simreport``).
SIMULATED_HEADING = '## Simulated production'
CHANGES_PLACEHOLDER = (
    '_Placeholder, for the library engineer to fill: one entry per change '
    'to the library, what it changed and the ratios before and after it '
    '(from this table at the commits before and after). Re-running the '
    'benchmark keeps this section as it is._\n')
_COLUMNS = ('measurement', 'size', 'ours', 'floor / ref', 'ratio', 'target',
            'met')


def _version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model():
    try:
        with open('/proc/cpuinfo') as info:
            for line in info:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _memory():
    try:
        with open('/proc/meminfo') as info:
            kib = int(info.readline().split()[1])
        return '%.1f GiB' % (kib / 1024 / 1024)
    except (OSError, ValueError, IndexError):
        return None


def _commit():
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        return subprocess.run(
            ['git', 'describe', '--always', '--dirty'], cwd=here,
            capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine():
    from google.protobuf.internal import api_implementation
    return {
        'platform': platform.platform(), 'cpu': _cpu_model(),
        'cpus': os.cpu_count(), 'memory': _memory(),
        'python': platform.python_version(),
        'appengine-python-standard': _version('appengine-python-standard'),
        'protobuf': '%s (%s)' % (_version('protobuf'),
                                 api_implementation.Type()),
        'lovely_gae commit': _commit(),
        'date': datetime.datetime.now(datetime.timezone.utc).strftime(
            '%Y-%m-%d %H:%M UTC')}


def _amount(value, unit):
    if value is None:
        return '-'
    if unit == 'bytes':
        return '%.1f KiB' % (value / 1024) if value < 10 * 1024 * 1024 else (
            '%.2f MiB' % (value / 1024 / 1024))
    if unit == 'MiB':
        return '%.1f MiB' % value
    if unit == 's/entity':
        return '%.1f µs/entity' % (value * 1e6)
    if unit in ('s/task', 's/each'):
        return '%.3f ms' % (value * 1e3)
    return '%.3f s' % value if value < 10 else '%.1f s' % value


def _ratio(row):
    if row['ratio'] is None:
        return 'over budget' if row['over_budget'] else '-'
    if row['over_budget'] and row.get('ratio_lower') is not None:
        return '>=%.2f (est. %.2f)' % (row['ratio_lower'], row['ratio'])
    if row['over_budget']:
        return 'est. %.2f' % row['ratio']
    return '%.2f' % row['ratio']


def _cells(row):
    met = {True: 'yes', False: 'NO', None: '-'}[row['met']]
    return (row['measurement'],
            '-' if row['size'] is None else '{:,}'.format(row['size']),
            _amount(row['ours'], row['unit']),
            _amount(row['floor'], row['unit']), _ratio(row),
            '-' if row['target'] is None else '<= %.2f' % row['target'], met)


def _layout(header, lines, markdown):
    if markdown:
        out = ['| ' + ' | '.join(header) + ' |',
               '|' + '|'.join('---' for _ in header) + '|']
        return '\n'.join(out + ['| ' + ' | '.join(cells) + ' |'
                                for cells in lines])
    widths = [max(len(str(c)) for c in column)
              for column in zip(header, *lines)]
    fmt = '  '.join('%%-%ds' % w for w in widths)
    rule = '  '.join('-' * w for w in widths)
    return '\n'.join([fmt % header, rule] + [fmt % tuple(c) for c in lines])


def table(rows, markdown=False):
    return _layout(_COLUMNS, [_cells(r) for r in rows], markdown)


def codec_table(rows, markdown=False):
    header = ('codec', 'size', 'stored', 'vs seed bz2', 'snapshot',
              'read back', 'compress (mem)', 'decompress (mem)')
    lines = []
    for r in rows:
        vs = ('%.2f' % (r['stored_bytes'] / r['seed_bz2_bytes'])
              if r['stored_bytes'] else '-')
        lines.append((
            r['codec'], '{:,}'.format(r['size']),
            _amount(r['stored_bytes'], 'bytes'), vs,
            _amount(r['snapshot_s'], 's') + (' (est.)' if r['over_budget']
                                             else ''),
            _amount(r['read_back_s'], 's'), _amount(r['compress_s'], 's'),
            _amount(r['decompress_s'], 's')))
    return _layout(header, lines, markdown)


def notes(rows):
    """The notes of the rows, once each, as ``(label, note)``."""
    seen = {}
    for r in rows:
        if r['note'] and r['note'] not in seen:
            label = r['measurement']
            if r['size'] is not None and not label.startswith('scaling'):
                label += ' {:,}'.format(r['size'])
            seen[r['note']] = label
    return [(label, note) for note, label in seen.items()]


def _read(path):
    try:
        with open(path, encoding='utf-8') as existing:
            return existing.read()
    except OSError:
        return None


def _section(text, heading):
    """The body of the section ``heading`` of ``text`` (None if none)."""
    start = -1 if text is None else text.find(heading + '\n')
    if start < 0:
        return None
    body = text[start + len(heading):]
    end = body.find('\n## ')
    return body if end < 0 else body[:end + 1]


def _kept_changes(path):
    """The 'What each change bought' section of an existing file, kept."""
    return _section(_read(path), CHANGES_HEADING)


def write_section(path, heading, body):
    """Put section ``heading`` (``body`` starts with it) into the file at
    ``path``: in place of the old one, else before 'What each change
    bought', else at the end. The rest of the file stays as it is."""
    text = _read(path) or ''
    old = _section(text, heading)
    body = body.rstrip('\n') + '\n'
    if old is not None:
        start = text.find(heading + '\n')
        text = text[:start] + body + text[start + len(heading) + len(old):]
    elif CHANGES_HEADING + '\n' in text:
        start = text.find(CHANGES_HEADING + '\n')
        text = text[:start] + body + '\n' + text[start:]
    else:
        text = text.rstrip('\n') + ('\n\n' if text else '') + body
    _write(path, text)


def _write(path, text):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temporary = path + '.tmp'
    with open(temporary, 'w', encoding='utf-8') as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


def write_results(path, result):
    """Write ``RESULTS.md``; its 'What each change bought' section stays."""
    info = result['machine']
    setup = result['setup']
    kept = _kept_changes(path)
    lines = [
        '# Benchmark results (issue 5)', '',
        'Written by `%s` on %s. Ratios are ours divided by the floor (or '
        'reference) measured in the same process, each side in a fresh '
        'testbed of the SDK\'s datastore stub holding the same data; the '
        'times beside them are for context only.'
        % (setup['command'], info['date']), '',
        '## Machine', '']
    lines += ['- %s: %s' % (key, value) for key, value in info.items()
              if key != 'date']
    lines += [
        '', '## Setup', '',
        '- kind `%s`: six properties (%s), mean encoded size %.1f bytes'
        % (setup['kind'], ', '.join(setup['properties']),
           setup['mean_encoded_bytes']),
        '- sizes: %s; repeats per side: %s (median taken); budget per '
        'measurement: %g s' % (', '.join('{:,}'.format(s) for s in
                                          setup['sizes']),
                                setup['repeats'], setup['budget']),
        '- a measurement over budget stops; its time is extrapolated from '
        'the share of ranges done and shown as `>=lower bound (est. '
        'extrapolated)`',
        '', '## Results', '', table(result['rows'], markdown=True), '']
    for measurement, note in notes(result['rows']):
        lines.append('- %s: %s' % (measurement, note))
    for title, key in (('Skipped', 'skipped'), ('Errors', 'errors')):
        if result.get(key):
            lines += ['', '### ' + title, '']
            lines += ['- %s: %s' % item for item in result[key]]
    if result.get('codecs'):
        lines += ['', '## Codecs', '',
                  'Each codec on our stored format: a snapshot written with '
                  'it, its stored bytes against the seed\'s bz2, and the '
                  'codec alone in memory.', '',
                  codec_table(result['codecs'], markdown=True)]
    simulated = _section(_read(path), SIMULATED_HEADING)
    if simulated is not None:  # a --simulate run's section stays too
        lines += ['', SIMULATED_HEADING + simulated.rstrip('\n')]
    lines += ['', CHANGES_HEADING]
    text = '\n'.join(lines) + (kept if kept is not None
                               else '\n\n' + CHANGES_PLACEHOLDER)
    _write(path, text)


def default_path():
    return os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        'RESULTS.md')
