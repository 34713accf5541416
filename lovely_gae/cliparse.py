"""The arguments of ``lovely-gae``: its parser, and the checks of its values.

It imports nothing of the SDK, so that ``--help``, ``--version`` and a
usage error answer at once; the commands import what they need.
"""
import argparse
import functools
import json
import re

from . import __version__, defaults

__all__ = ['build_parser', 'parse', 'check_usage']

#: The largest TCP port.
MAX_PORT = 65535


class _Parser(argparse.ArgumentParser):
    """A parser whose usage errors are JSON on stderr, with ``json_errors``
    (the command line has ``--json``): ``error``, ``type``, ``exit``,
    ``usage``."""

    def __init__(self, *args, json_errors=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.json_errors = json_errors

    def parse_known_args(self, args=None, namespace=None):
        self.seen = list(args or ())  # what ``error`` may point at
        return super().parse_known_args(args, namespace)

    def error(self, message):
        message += self._hint(message)
        if self.json_errors:
            self.exit(2, json.dumps({
                'error': message, 'type': 'UsageError', 'exit': 2,
                'usage': self.format_usage().strip()}, sort_keys=True) + '\n')
        super().error(message)

    def _hint(self, message):
        """What the user may have meant, for a misspelt command (or one
        an unknown option before it hides), or a snapshot ID that an
        option's list of values took (an unknown option: ``parse``)."""
        commands = getattr(self, 'commands', None) or {}
        wrong = re.match(r"argument COMMAND: invalid choice: '(.*?)'",
                         message)
        options = set(self._option_string_actions)
        for command in commands.values():
            options.update(command._option_string_actions)
        if wrong:
            seen = getattr(self, 'seen', [])
            place = seen.index(wrong.group(1)) if wrong.group(1) in seen else 0
            before = seen[place - 1] if place else ''
            if before.startswith('-') and before not in options:
                return '; %s is no option%s' % (
                    before, _did_you_mean(before, options))
            return _did_you_mean(wrong.group(1), commands)
        if message.endswith('required: ID'):
            ids = [value for value in getattr(self, 'seen', ())
                   if value.isdigit()]
            if ids:
                return ('; %s looks like the snapshot ID: put it before the '
                        'options that take lists (--kinds)' % ids[-1])
        return ''

    def one_line_error(self, message):
        """A usage error where the usage would not help: the command is
        right, what it is asked to do is not."""
        if self.json_errors:
            self.error(message)
        self.exit(2, '%s: error: %s\n' % (self.prog, message))


def _mask(value):
    """An argparse ``type``: ``[KIND.]PROPERTY``."""
    if not value.rpartition('.')[2]:
        raise argparse.ArgumentTypeError('%r names no property' % value)
    return value


def _masks(cmd, done, doing):
    """``--mask`` and ``--allow-unmatched-mask`` of a command that writes
    entities somewhere (``done``: what happens to them; ``doing``: the
    command's work, as the option's help says it)."""
    cmd.add_argument('--mask', action='append', type=_mask,
                     metavar='[KIND.]PROPERTY', help='mask this property '
                     '(of every kind, or of KIND): each text becomes '
                     'masked-<16 hex digits>, equal texts alike, any other '
                     'value null; repeat for more. A mask that matches '
                     'no property of any entity %s is an error, and '
                     'nothing is %s' % (done, done))
    cmd.add_argument('--allow-unmatched-mask', action='store_true',
                     help='%s even if a --mask matched nothing (a standing '
                     'list of masks over snapshots that may lack some '
                     'kinds); it is still said on stderr' % doing)


def _bounded(kind, low, high=None):
    """An argparse ``type``: a ``kind`` (int, float) from ``low`` to
    ``high`` (None: any above ``low``)."""
    def convert(value):
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError('not a number: %r'
                                             % value) from None
        if number < low or (high is not None and number > high):
            raise argparse.ArgumentTypeError('%s is not %s' % (value, (
                'from %s to %s' % (low, high) if high is not None
                else 'at least %s' % low)))
        return number
    convert.__name__ = kind.__name__
    return convert


def _global_options(parser, suppress):
    """Add the options every command takes, before or after its name.

    A command's parser has them too (``suppress``), with no defaults: a
    value given before the command name is not overwritten by its default.
    """
    def default(value):
        return argparse.SUPPRESS if suppress else value
    group = parser.add_argument_group('global options')
    group.add_argument('--version', action='version', version=__version__)
    # --datastore and --url exclude each other: ``check_usage`` sees both
    # levels, where a group would see one.
    group.add_argument('--datastore', metavar='PATH', default=default(None),
                       help='local datastore file (default: %s); PATH%s '
                       'beside it keeps two processes from writing it at '
                       'once' % (defaults.DATASTORE_FILE,
                                 defaults.LOCK_SUFFIX))
    group.add_argument('--url', default=default(None), help='base URL of '
                       'the app, e.g. https://my-app.appspot.com')
    group.add_argument('--app-id', metavar='APP', default=default(None),
                       help='app id of the local datastore (default: '
                       '$GAE_APPLICATION or %s)' % defaults.LOCAL_APP_ID)
    group.add_argument('--token', default=default(None), help='bearer token '
                       'for --url, and the token serve requires (default: '
                       '$%s)' % defaults.TOKEN_ENV)
    group.add_argument('--json', action='store_true', default=default(False),
                       help='print machine-readable JSON')
    group.add_argument('--debug', action='store_true',
                       default=default(False),
                       help='show tracebacks and debug logs')


def _threads(cmd):
    cmd.add_argument('--threads', type=_bounded(int, 1, 64), default=1,
                     metavar='N', help='worker threads running tasks at '
                     'once, 1 to 64 (default: %(default)s)')


def _waiting(cmd):
    cmd.add_argument('--async', action='store_true', dest='run_async',
                     help='return at once with the snapshot ID; the work '
                     'goes on in tasks (lovely-gae worker, or the app\'s)')
    cmd.add_argument('--timeout', type=_bounded(float, 0), metavar='SECONDS',
                     help='wait at most SECONDS for the work, showing '
                     'progress; then say it is still going and exit 1 '
                     '(default: no limit)')


def _yes(cmd, does='deleting'):
    cmd.add_argument('-y', '--yes', action='store_true', help='do not ask '
                     'before %s (without a terminal to ask on, '
                     'required)' % does)


def _snapshot_id(cmd, **kwargs):
    cmd.add_argument('id', type=_bounded(int, 1), metavar='ID',
                     **kwargs)


def _add_commands(sub, commands, common):
    """A parser for each command; ``commands`` maps names to functions."""
    def add(name, help_text, where='any', writes=True):
        cmd = sub.add_parser(name, help=help_text, description=help_text,
                             parents=[common])
        cmd.set_defaults(func=commands[name], where=where, writes=writes)
        return cmd

    cmd = add('create', 'snapshot kinds (default: all); wait until it is '
              'finished, showing progress (--async: return at once)')
    cmd.add_argument('kinds', nargs='*', metavar='KIND')
    cmd.add_argument('--batchsize', type=int, metavar='N', help='entities '
                     'per range (default: %d)' % defaults.BATCH_SIZE)
    cmd.add_argument('--namespace', metavar='NS',
                     help='namespace (default: the default namespace)')
    cmd.add_argument('--allow-empty', action='store_true', help='snapshot '
                     'a kind even if it has no entities (without: an error, '
                     'as a typo or the wrong namespace usually is)')
    _waiting(cmd)
    cmd = add('list', 'list every snapshot, newest first (over --url, '
              'fetched a page at a time)', writes=False)
    cmd.add_argument('--limit', type=_bounded(int, 1), metavar='N',
                     help='list the newest N only')
    cmd = add('status', 'show one snapshot', writes=False)
    _snapshot_id(cmd)
    cmd = add('restore', 'restore a snapshot exactly: entities of its kinds '
              'that are not in it are deleted')
    _snapshot_id(cmd)
    cmd.add_argument('--kinds', nargs='+', metavar='KIND',
                     help='restore only these kinds (default: all of the '
                     'snapshot\'s)')
    cmd.add_argument('--dry-run', action='store_true',
                     help='write nothing; count what would change (without '
                     '--yes, restore shows this and asks)')
    _yes(cmd)
    _waiting(cmd)
    cmd = add('delete', 'delete a snapshot and its stored data')
    _snapshot_id(cmd)
    _yes(cmd)
    cmd = add('prune', 'keep the newest N finished snapshots, delete older '
              'ones')
    cmd.add_argument('--keep', type=_bounded(int, 0), required=True,
                     metavar='N', help='finished snapshots to keep, 0 or '
                     'more')
    _yes(cmd)
    cmd = add('download', 'write a snapshot to OUT_DIR/snapshot.ID, a file '
              'a development datastore loads; over --url it is checked '
              'range by range and resumes where an interrupted download '
              'stopped', writes=False)
    _snapshot_id(cmd, nargs='?', help='the snapshot: a number (default: the '
                 'latest finished one)')
    cmd.add_argument('out_dir', metavar='OUT_DIR', help='directory to write '
                     'to, created if missing; never a number, which is an '
                     'ID (a directory named 442: ./442)')
    cmd.add_argument('--target-app-id', metavar='APP', help='move keys and '
                     'references to this app id (a development app)')
    cmd.add_argument('--target-namespace', metavar='NS', help='move keys '
                     'and references of the snapshot\'s namespace here')
    _masks(cmd, 'written', 'write the file')
    cmd = add('upload', 'put the entities of a downloaded file into the '
              'datastore (local: moved to its app id; --url: through the '
              'app, moved to its app id)')
    cmd.add_argument('file', metavar='FILE')
    cmd.add_argument('--target-namespace', metavar='NS', help='move keys '
                     'and references of the file\'s namespace here')
    _masks(cmd, 'uploaded', 'upload the file')
    _yes(cmd, 'replacing entities')
    cmd = add('verify', 'check that a downloaded file is complete and '
              'count its entities per kind', where='none', writes=False)
    cmd.add_argument('file', metavar='FILE')
    cmd = add('inspect', 'list what a downloaded file holds: namespaces, '
              'kinds, entities and the first and last key of each kind',
              where='none', writes=False)
    cmd.add_argument('file', metavar='FILE')
    cmd = add('queue', 'show the task queue of the local datastore file: '
              'tasks queued, leased and failed, and why each failed one '
              'failed', where='local', writes=False)
    action = cmd.add_mutually_exclusive_group()
    action.add_argument('--retry', action='store_true', help='queue the '
                        'failed tasks again, their attempts reset')
    action.add_argument('--drop', action='store_true', help='delete the '
                        'failed tasks')
    _yes(cmd)
    cmd = add('serve', 'serve the snapshot app on the local datastore file, '
              'with a worker draining the task queue; callers need the '
              'token (--token, $%s, or one made up and printed at the '
              'start)' % defaults.TOKEN_ENV, where='local')
    cmd.add_argument('--no-token', action='store_true', help='serve '
                     'without a token, to callers on this machine only')
    cmd.add_argument('--host', default='127.0.0.1',
                     help='address to listen on (default: %(default)s)')
    cmd.add_argument('--port', type=_bounded(int, 0, MAX_PORT),
                     default=8080, help='port, 0 for any free one '
                     '(default: %(default)s)')
    _threads(cmd)
    cmd = add('worker', 'run queued tasks until none is due')
    cmd.add_argument('--seconds', type=_bounded(float, 0), metavar='S',
                     help='stop after about S seconds (default: when none '
                     'is due)')
    cmd.add_argument('--wait', action='store_true', help='also wait for '
                     'tasks due later (retries) until the queue is empty')
    _threads(cmd)
    add('demo', 'walk through snapshot, damage, restore and download on '
        'sample data in the local datastore file', where='local')


def build_parser(commands, json_errors=False):
    """The parser of ``lovely-gae``; ``commands`` maps each command's name
    to the function that runs it (``func`` of the parsed arguments).
    ``json_errors``: usage errors are JSON (``--json``)."""
    parser = _Parser(
        json_errors=json_errors,
        prog='lovely-gae',
        description='Snapshots of App Engine datastore kinds: create, '
                    'restore, download, upload. Works on a local datastore '
                    'file (the embedded default) or, with --url, on an app '
                    'that serves lovely_gae.snapshot.getApp().',
        epilog='The global options go before or after COMMAND; '
               '"lovely-gae COMMAND --help" describes a command.')
    _global_options(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, suppress=True)
    sub = parser.add_subparsers(dest='command', metavar='COMMAND',
                                parser_class=functools.partial(
                                    _Parser, json_errors=json_errors))
    sub.required = True
    _add_commands(sub, commands, common)
    parser.commands = sub.choices  # the parser of each command, by name
    return parser


def _did_you_mean(word, choices):
    """``; did you mean list?`` if one of ``choices`` is close to ``word``."""
    import difflib  # only for a usage error: --help stays quick
    close = difflib.get_close_matches(word, list(choices), 1)
    return '; did you mean %s?' % close[0] if close else ''


def parse(parser, argv):
    """``parser.parse_args(argv)``, but an unknown option is told with the
    usage of its command, and the option it is close to."""
    args, extras = parser.parse_known_args(argv)
    if extras:
        command = parser.commands[args.command]
        options = [option for action in command._actions
                   for option in action.option_strings]
        hints = [_did_you_mean(extra.partition('=')[0], options)
                 for extra in extras if extra.startswith('-')]
        command.error('unrecognized arguments: %s%s' % (
            ' '.join(extras), next(filter(None, hints), '')))
    return args


def check_usage(parser, args):
    """Exit with a usage error (2) for what the parser cannot see."""
    command = parser.commands[args.command]
    if args.url and args.datastore:
        command.error('--datastore and --url exclude each other')
    if args.url and not args.url.lower().startswith(('http://', 'https://')):
        command.one_line_error('--url needs http:// or https://: got %r'
                               % args.url)
    if args.command == 'download' and args.out_dir.isdigit():
        command.error('%s is a snapshot ID; give OUT_DIR too, or ./%s for '
                      'a directory of that name'
                      % (args.out_dir, args.out_dir))
    if args.url and args.command == 'queue':
        # One line: the usage would not help, the command is right.
        command.one_line_error('an app\'s task queue is not available over '
                               '--url, only a local datastore file\'s')
    if args.url and args.where == 'local':
        command.error('works on a local datastore file, not --url')
    if args.url and args.app_id:
        command.error('--app-id is for a local datastore, not --url')
    if getattr(args, 'no_token', False) and args.token:
        command.error('--no-token and --token exclude each other')
    if args.command == 'queue':
        args.writes = args.retry or args.drop
