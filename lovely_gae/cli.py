"""``lovely-gae``: snapshots from the command line, thin over the library.

By default it works on the embedded datastore: a local file that the SDK's
``DatastoreFileStub`` opens and saves (``--datastore``). Commands that
create or restore run their tasks to the end before they return.
"""
import argparse
import contextlib
import json
import logging
import os
import sys

from . import __version__
from .exceptions import LovelyGaeError

__all__ = ['main', 'local_datastore']

log = logging.getLogger('lovely_gae.cli')

DEFAULT_DATASTORE = './lovely-gae.datastore'
DEFAULT_APP_ID = 'lovely-gae-local'


@contextlib.contextmanager
def local_datastore(path, app_id=None, save=True):
    """Serve the datastore API from the file at ``path`` while inside.

    With ``save`` the file is written back (to a temporary name, then
    renamed, as the SDK does) when the block ends without an error.
    """
    from .testing import start_testbed
    app_id = app_id or os.environ.get('GAE_APPLICATION') or DEFAULT_APP_ID
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise LovelyGaeError('no such directory for --datastore: %s'
                             % directory)
    if not os.path.exists(path):
        # A new file is the normal start; the SDK warns about it anyway.
        logging.getLogger('google.appengine.api.stubs.datastore').setLevel(
            logging.ERROR)
    bed = start_testbed(app_id=app_id, datastore_file=path,
                        save_changes=False)
    stub = bed.get_stub('datastore_v3')
    try:
        yield stub
        if save:
            stub._DatastoreFileStub__save_changes = True
            stub.Write()
    finally:
        stub._DatastoreFileStub__save_changes = False
        bed.deactivate()


def drain():
    """Run every queued task, waiting out retries, until none is left."""
    from .async_ import run_tasks
    return run_tasks(recursive=True, wait=True)


def _print(args, data, text):
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
    elif text:
        print(text)


def _describe(info):
    progress = info['progress']
    total = progress['ranges_total']
    lines = ['Snapshot %s: %s' % (info['id'], info['status']),
             'Kinds: %s' % ', '.join(info['kinds']),
             'Namespace: %r' % info['namespace'],
             'Created: %s' % info['created'],
             'Ranges: %s/%s, entities: %s, stored bytes: %s' % (
                 progress['ranges_done'], '?' if total is None else total,
                 progress['entities'], progress['bytes'])]
    if info.get('error'):
        lines.append('Error: %s' % info['error'])
    if info.get('restore'):
        lines.append('Last restore: %s' % info['restore']['status'])
    return '\n'.join(lines)


def cmd_create(args, api):
    snap = api.create_snapshot(args.kinds or None, args.batchsize,
                               args.namespace)
    drain()
    info = api.get_snapshot(snap.id).to_dict()
    _print(args, info, 'Created Snapshot %d\nKinds: %r\n%s' % (
        snap.id, snap.kinds, _describe(info)))
    return 0 if info['status'] == 'finished' else 1


def cmd_list(args, api):
    infos = [snap.to_dict() for snap in api.list_snapshots()]
    rows = ['%6s  %-8s  %-27s  %9s  %s' % (
        i['id'], i['status'], i['created'], i['progress']['entities'],
        ','.join(i['kinds'])) for i in infos]
    header = '%6s  %-8s  %-27s  %9s  %s' % ('id', 'status', 'created',
                                            'entities', 'kinds')
    _print(args, infos, '\n'.join([header] + rows))
    return 0


def cmd_status(args, api):
    info = api.get_snapshot(args.id).to_dict()
    _print(args, info, _describe(info))
    return 0


def cmd_restore(args, api):
    result = api.restore_snapshot(args.id, kinds=args.kinds,
                                  dry_run=args.dry_run)
    if args.dry_run:
        text = '\n'.join('%s: %d created, %d changed, %d deleted' % (
            kind, c['created'], c['changed'], c['deleted'])
            for kind, c in sorted(result.items()))
        _print(args, result, 'Dry run, nothing written.\n' + text)
        return 0
    drain()
    restore = api.get_snapshot(args.id).restore_progress()
    _print(args, restore, 'Restore of snapshot %s: %s' % (
        args.id, restore['status']))
    return 0 if restore['status'] == 'finished' else 1


def cmd_delete(args, api):
    api.delete_snapshot(args.id)
    drain()
    _print(args, {'deleted': [args.id]}, 'Deleted snapshot %s' % args.id)
    return 0


def cmd_prune(args, api):
    deleted = api.prune(args.keep)
    drain()
    _print(args, {'deleted': deleted},
           'Deleted snapshots: %s' % (', '.join(map(str, deleted)) or
                                      'none'))
    return 0


def cmd_download(args, api):
    from .snapshot import client
    snapshot_id, out_dir = (args.where if len(args.where) == 2
                            else [None] + args.where)
    path = client.download_snapshot(out_dir, snapshot_id,
                                    progress=client.progress_for(args.json))
    _print(args, {'path': path}, None)
    return 0


def cmd_verify(args, api):
    from .snapshot import devfile
    counts = devfile.count_kinds(args.file)
    total = sum(counts.values())
    _print(args, {'file': args.file, 'entities': total, 'kinds': counts},
           '%s: %d entities\n%s' % (args.file, total, '\n'.join(
               '  %s: %d' % item for item in sorted(counts.items()))))
    return 0


def cmd_worker(args, api):
    from .async_ import run_tasks
    ran = run_tasks(recursive=True, wait=args.wait)
    _print(args, {'ran': ran}, 'Ran %d tasks' % ran)
    return 0


def cmd_demo(args, api):
    from . import demo
    return demo.run(args.json)


def build_parser():
    parser = argparse.ArgumentParser(
        prog='lovely-gae',
        description='Snapshots of App Engine datastore kinds: create, '
                    'restore, download. Works on a local datastore file '
                    '(the embedded default).')
    parser.add_argument('--version', action='version', version=__version__)
    parser.add_argument('--datastore', default=DEFAULT_DATASTORE,
                        help='local datastore file (default: %(default)s)')
    parser.add_argument('--app-id', help='app id of the local datastore '
                        '(default: $GAE_APPLICATION or %s)' % DEFAULT_APP_ID)
    parser.add_argument('--json', action='store_true',
                        help='print machine-readable JSON')
    parser.add_argument('--debug', action='store_true',
                        help='show tracebacks and debug logs')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True

    def add(name, func, help_text, writes=True):
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        cmd.set_defaults(func=func, writes=writes)
        return cmd

    cmd = add('create', cmd_create, 'snapshot kinds (default: all) and wait '
              'until it is finished')
    cmd.add_argument('kinds', nargs='*', metavar='KIND')
    cmd.add_argument('--batchsize', type=int, help='entities per range')
    cmd.add_argument('--namespace', help='namespace (default: the default)')
    add('list', cmd_list, 'list snapshots, newest first', writes=False)
    cmd = add('status', cmd_status, 'show one snapshot', writes=False)
    cmd.add_argument('id', type=int)
    cmd = add('restore', cmd_restore, 'restore a snapshot exactly: entities '
              'not in it are deleted')
    cmd.add_argument('id', type=int)
    cmd.add_argument('--kinds', nargs='+', metavar='KIND',
                     help='restore only these kinds')
    cmd.add_argument('--dry-run', action='store_true',
                     help='write nothing; count what would change')
    cmd = add('delete', cmd_delete, 'delete a snapshot and its stored data')
    cmd.add_argument('id', type=int)
    cmd = add('prune', cmd_prune, 'keep the newest N finished snapshots')
    cmd.add_argument('--keep', type=int, required=True, metavar='N')
    cmd = add('download', cmd_download, 'write a snapshot (default: the '
              'latest) to OUT_DIR/snapshot.ID, a file a development '
              'datastore loads', writes=False)
    cmd.add_argument('where', nargs='+', metavar='[ID] OUT_DIR')
    cmd = add('verify', cmd_verify, 'check that a downloaded file is '
              'complete and count its entities per kind', writes=False)
    cmd.add_argument('file')
    cmd = add('worker', cmd_worker, 'run queued tasks until none is due')
    cmd.add_argument('--wait', action='store_true',
                     help='also wait for retries until the queue is empty')
    add('demo', cmd_demo, 'walk through snapshot, damage, restore and '
        'download on sample data in the local datastore file')
    return parser


def split_global_options(argv):
    """``(leading global options, the rest)`` of an argument list."""
    with_value = {option for action in build_parser()._actions
                  if action.nargs != 0 for option in action.option_strings}
    rest = list(argv)
    options = []
    while rest and rest[0].startswith('--'):
        count = 2 if rest[0] in with_value else 1
        options += rest[:count]
        rest = rest[count:]
    return options, rest


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.func is cmd_download and len(args.where) > 2:
        parser.error('download takes [ID] OUT_DIR')
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format='%(levelname)s %(name)s: %(message)s')
    try:
        from .snapshot import api
        with local_datastore(args.datastore, args.app_id, save=args.writes):
            return args.func(args, api)
    except (LovelyGaeError, OSError) as error:
        if args.debug:
            raise
        print('lovely-gae: error: %s' % error, file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
