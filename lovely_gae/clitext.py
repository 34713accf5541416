"""How ``lovely-gae`` shows snapshots, restores and dry runs as text.

It takes the data ``--json`` prints (``docs/cli.rst``) and imports nothing
of the SDK.
"""
import datetime

__all__ = ['printable', 'describe', 'listing', 'plan', 'age', 'span',
           'size', 'next_task', 'worker_ran', 'error_data', 'count',
           'entities', 'kept', 'put', 'keys_of', 'other_apps', 'RUN_WORKER']

#: What work left queued in a local datastore file waits for.
RUN_WORKER = 'run `lovely-gae worker` to finish it'


def printable(text):
    """``text`` with what a terminal would act on shown escaped: kinds,
    namespaces and errors come from the datastore or an app, and an escape
    sequence in one could retitle the terminal or paint over a line."""
    return '\n'.join(
        line if line.isprintable() else ''.join(
            c if c.isprintable() else repr(c)[1:-1] for c in line)
        for line in str(text).split('\n'))


def _of(done, total):
    return '%s/%s' % (done, '?' if total is None else total)


def _by_kind(by_kind):
    """A line per kind: ``  Customer: 2/5 ranges``."""
    return ['  %s: %s ranges' % (kind, _of(counts['ranges_done'],
                                           counts['ranges_total']))
            for kind, counts in sorted((by_kind or {}).items())]


def _work(title, work):
    """A restore's or a dry run's lines: status, ranges, and per kind."""
    line = '%s: %s, ranges %s' % (title, work['status'], _of(
        work['ranges_done'], work['ranges_total']))
    if work.get('error'):
        line += ': ' + work['error']
    return [line] + _by_kind(work.get('by_kind'))


def describe(info):
    """A snapshot (``Snapshot.to_dict()``) as ``status`` shows it, with the
    ranges of each kind, and its latest restore and dry run."""
    progress = info['progress']
    lines = ['Snapshot %s: %s' % (info['id'], info['status']),
             'Kinds: %s' % ', '.join(info['kinds']),
             'Namespace: %r' % info['namespace'],
             'Created: %s' % info['created'],
             'Ranges: %s, entities: %s, stored bytes: %s' % (
                 _of(progress['ranges_done'], progress['ranges_total']),
                 progress['entities'], progress['bytes'])]
    lines += _by_kind(progress.get('by_kind'))
    if info.get('error'):
        lines.append('Error: %s' % info['error'])
    if info.get('restore'):
        lines += _work('Last restore', info['restore'])
    if info.get('plan'):
        lines += _work('Last dry run', info['plan'])
    return '\n'.join(lines)


def listing(infos):
    """Snapshots as ``list`` shows them: a row each, under a header."""
    line = '%6s  %-8s  %6s  %-16s  %9s  %9s  %s'
    now = datetime.datetime.now(datetime.timezone.utc)
    rows = [line % (
        i['id'], i['status'], age(now, i['created']), i['namespace'] or "''",
        i['progress']['entities'], size(i['progress']['bytes']),
        ','.join(i['kinds'])) for i in infos]
    header = line % ('id', 'status', 'age', 'namespace', 'entities',
                     'stored', 'kinds')
    return '\n'.join([header] + rows)


def plan(counts):
    """A dry run's plan: ``Customer: 1 created, 0 changed, 2 deleted``."""
    return '\n'.join('%s: %d created, %d changed, %d deleted' % (
        kind, c['created'], c['changed'], c['deleted'])
        for kind, c in sorted(counts.items()))


def age(now, created):
    """``created`` (ISO, UTC) as an age: 45s, 12m, 5h, 3d."""
    then = datetime.datetime.fromisoformat(created.rstrip('Z')).replace(
        tzinfo=datetime.timezone.utc)
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size_ in (('d', 86400), ('h', 3600), ('m', 60)):
        if seconds >= size_:
            return '%d%s' % (seconds // size_, unit)
    return '%ds' % seconds


def span(seconds):
    """Seconds as people read them: 45 s, 9 min 58 s, 2 h 5 min, 3 d 4 h."""
    seconds = int(round(seconds))
    for unit, name, part, part_name in ((86400, 'd', 3600, 'h'),
                                        (3600, 'h', 60, 'min'),
                                        (60, 'min', 1, 's')):
        if seconds >= unit:
            rest = seconds % unit // part
            return '%d %s' % (seconds // unit, name) + (
                ' %d %s' % (rest, part_name) if rest else '')
    return '%d s' % seconds


def next_task(task):
    """The task that falls due next (``calls.next_task``), as ``worker``
    and ``queue`` say it: ``purge_snapshot(605), due in 9 min 58 s``."""
    if task['held']:
        return '%s, held by a worker (%s)' % (task['task'], (
            'its lease ends in ' + span(task['due_in']))
            if task['due_in'] >= 0.5 else 'its lease has ended')
    return '%s, due %s' % (task['task'], 'in ' + span(task['due_in'])
                           if task['due_in'] >= 0.5 else 'now')


def worker_ran(answer):
    """What ``worker`` says it did: ``Ran 0 tasks; 1 queued, next:
    purge_snapshot(605), due in 9 min 58 s``."""
    text = 'Ran %s; %d queued' % (count(answer['ran'], 'task'),
                                  answer['queued'])
    if answer['next']:
        text += ', next: ' + next_task(answer['next'])
    return text


def size(count):
    """Bytes as people read them: 850 B, 19.0 KiB, 1.2 GiB."""
    for unit in ('B', 'KiB', 'MiB', 'GiB'):
        if count < 1024 or unit == 'GiB':
            return ('%d %s' if unit == 'B' else '%.1f %s') % (count, unit)
        count /= 1024


def count(number, noun, nouns=None):
    """``1 task``, ``2 tasks`` (``nouns``: the plural, if not noun + s)."""
    return '%d %s' % (number, noun if number == 1 else nouns or noun + 's')


def entities(number):
    """``1 entity``, ``2 entities``."""
    return count(number, 'entity', 'entities')


def keys_of(app_ids):
    """Which app's keys a file holds, and how it goes into a development
    datastore of another app id."""
    return ('Its keys are of app %s: a development datastore of that app '
            'id loads the file as it is.\nFor another app id: download with '
            '--target-app-id ID, or: lovely-gae --datastore FILE --app-id ID '
            'upload PATH' % ', '.join(repr(app) for app in app_ids))


def other_apps(path, app_ids, app_id):
    """What is said of a datastore file that holds entities of other app
    ids only: served as ``app_id`` it finds none of them."""
    return ('%s holds entities of app %s, none of app %r: --app-id %s '
            'works on them' % (path, ', '.join(map(repr, app_ids)), app_id,
                               app_ids[0]))


def kept(kept):
    """What an interrupted download says of the ranges it keeps."""
    return ('%(ranges)d of %(of)d ranges kept in %(path)s; run the same '
            'command again to go on' % kept)


def put(put):
    """What an upload through an app that stopped says it put."""
    return ('at least %d of %s were put before it stopped; run the same '
            'command again to put them all' % (put['entities'], entities(
                put['of'])))


def error_data(error, status):
    """What ``--json`` says of ``error`` on stderr: ``error`` (its line),
    ``type``, ``exit`` (the status), and ``id`` of the snapshot if any."""
    data = {'error': str(error), 'type': type(error).__name__,
            'exit': status}
    snapshot_id = getattr(error, 'snapshot_id', None)
    if snapshot_id is not None:
        data['id'] = snapshot_id
    # A wait that ran out (its hint); masks that matched nothing.
    for name in ('status', 'work', 'seconds', 'hint', 'unmatched_masks'):
        if name in vars(error):
            data[name] = vars(error)[name]
    return data
