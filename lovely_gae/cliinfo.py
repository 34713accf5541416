"""``lovely-gae queue``, ``inspect`` and ``verify``: what the task queue and
a downloaded file hold, as ``rq info`` and ``pg_restore --list`` show it."""
import os

from . import cliask, clitext
from .exceptions import LovelyGaeError

__all__ = ['cmd_queue', 'cmd_inspect', 'cmd_verify', 'check_file',
           'check_apart']

#: Characters of a failed task's error that ``queue`` prints at most.
_ERROR_CHARS = 200


def _one_line(text):
    """The last line of ``text`` (an error's message), printable, bounded:
    what a task stored is data, not for the terminal to act on."""
    lines = (text or '').strip().splitlines() or ['']
    line = lines[-1] if lines[-1].isprintable() else repr(lines[-1])
    return line[:_ERROR_CHARS]


def check_file(path, twice=False):
    """Raise unless ``path`` is a file to read a snapshot from (``twice``:
    a regular file, not a pipe read once): one line that says what it is
    instead (a directory: which files it holds)."""
    if os.path.isdir(path):
        names = sorted((name for name in os.listdir(path)
                        if name.startswith('snapshot.')), key=_by_id)
        example = os.path.join(path, names[-1] if names else 'snapshot.604')
        raise LovelyGaeError('%s is a directory: give a snapshot file, e.g. '
                             '%s%s' % (path, example, '' if not names else
                                       ' (it holds %s)' % ', '.join(names)))
    if not os.path.exists(path):
        raise LovelyGaeError('no such file: %s' % path)
    if twice and not os.path.isfile(path):
        raise LovelyGaeError('%s is not a regular file: an upload reads it '
                             'twice, to check it whole and to send it; save '
                             'it to a file first' % path)


def check_apart(path, datastore):
    """Raise unless ``path``, a file to put into the datastore file
    ``datastore``, is another file: put into itself, it would be changed
    (its entities again under the local app id, the library's too)."""
    try:
        same = os.path.samefile(path, datastore)
    except OSError:
        return  # no datastore file yet: another one, to be made
    if same:
        raise LovelyGaeError('%s is the datastore file (--datastore %s): '
                             'upload it into another one' % (path, datastore))


def _by_id(name):
    """``snapshot.7`` before ``snapshot.12``."""
    suffix = name.partition('.')[2]
    return (suffix.isdigit(), int(suffix) if suffix.isdigit() else 0, name)


def cmd_queue(args, client):
    from . import async_
    if args.retry:
        count = async_.retry_failed()
        return (0, {'retried': count},
                'Queued %s again' % clitext.count(count, 'failed task'))
    failed = async_.get_failed_tasks()
    if args.drop:
        if failed and not cliask.confirm(
                args, '%s: %s' % (
                    clitext.count(len(failed), 'failed task'),
                    ', '.join(sorted({task.func for task in failed}))),
                'Delete them?'):
            return cliask.DECLINED
        count = async_.drop_failed()
        return 0, {'dropped': count}, 'Deleted %s' % clitext.count(
            count, 'failed task')
    from .snapshot.calls import next_task
    leased = async_.count_leased()
    waiting = len(async_.get_tasks())
    rows = [{'name': task.key().name(), 'func': _one_line(task.func),
             'attempts': task.attempts, 'error': _one_line(task.error),
             'created': task.created} for task in failed]
    data = {'queued': waiting - leased, 'leased': leased,
            'failed': len(failed), 'failed_tasks': rows,
            'next': next_task()}
    lines = ['queued: %(queued)d, leased: %(leased)d, failed: %(failed)d'
             % data]
    if data['next']:
        lines.append('next: ' + clitext.next_task(data['next']))
    lines += ['  %(func)s  attempts: %(attempts)d  %(error)s' % row
              for row in rows]
    return 0, data, '\n'.join(lines)


def cmd_inspect(args, client):
    from .snapshot.transfer import devfile
    summary = devfile.summarize(args.file)
    lines = ['%s: %d entities' % (args.file, summary['entities'])]
    for namespace in summary['namespaces']:
        lines.append('Namespace %r' % namespace['namespace'])
        lines += ['  %(kind)s: %(entities)d entities, keys %(first_key)s '
                  '.. %(last_key)s' % kind for kind in namespace['kinds']]
    if summary['app_ids']:
        lines.append(clitext.keys_of(summary['app_ids']))
    return 0, dict(summary, file=args.file), '\n'.join(lines)


def cmd_verify(args, client):
    from .snapshot.transfer import devfile
    counts = devfile.check_file(args.file)
    total = sum(counts.values())
    return (0, {'file': args.file, 'entities': total, 'kinds': counts},
            '%s: %d entities\n%s' % (args.file, total, '\n'.join(
                '  %s: %d' % item for item in sorted(counts.items()))))
