"""``lovely-gae``: snapshots from the command line, thin over the library.

By default it works on the embedded datastore: a local file in the format
of the SDK's ``DatastoreFileStub`` (``--datastore``, see ``local.py``);
commands that create or restore run their tasks to the end before they
return. With ``--url`` it talks to a deployed snapshot app over HTTP(S)
instead.

A command computes its result, the datastore file is saved, and only then
is the result printed. Commands that delete ask first (``cliask``).
Exit status: 0 done, 1 an error (one line on stderr) or a question
answered no, 2 bad usage or a question with no terminal to ask on, 130
Ctrl-C and 143 SIGTERM (the file keeps what it held before the command;
``serve`` saves and exits 0), 141 when nobody reads the output any more
(the work is saved all the same).

The arguments are parsed by ``cliparse``; the SDK is imported only once a
command runs, so that ``--help`` answers at once.
"""
import contextlib
import json
import logging
import os
import signal
import sys
import threading

from . import cliask, clifiles, cliinfo, cliparse, clitext, defaults
from .exceptions import AccessDenied, LovelyGaeError

__all__ = ['main', 'build_parser', 'download_snapshot']

#: Exit status when stdout is closed before the result is printed, as a
#: shell reports a command that SIGPIPE ended.
EXIT_STDOUT_CLOSED = 128 + signal.SIGPIPE


class Interrupted(Exception):
    """Ctrl-C, as ``--json`` names it."""


class _StdoutClosed(Exception):
    """Nobody reads stdout any more (a closed pipe)."""


def _out(text):
    """Print ``text`` (if any) at once; ``_StdoutClosed`` if nobody reads."""
    if text is None:
        return
    try:
        print(clitext.printable(text), flush=True)
    except BrokenPipeError:
        raise _StdoutClosed() from None


def _render(args, data, text):
    """What a command prints: ``data`` as JSON with ``--json``, else text."""
    if args.json:
        return None if data is None else json.dumps(
            data, indent=2, sort_keys=True, default=str)
    return text or None


# Each command returns ``(exit status, data for --json, text)``; ``main``
# prints them once the datastore file is saved.

def _work_progress(args):
    """The progress of work waited for, on stderr: stdout is the result's."""
    from .snapshot.progress import progress_for
    return progress_for(args.json, stream=sys.stderr)


def _wait(args, client, snapshot_id, work, restore_id=None):
    """The data of ``work`` once it has ended (``waiting.wait``)."""
    from .snapshot import waiting
    return waiting.wait(client, snapshot_id, work, restore_id,
                        timeout=args.timeout, progress=_work_progress(args))


def cmd_create(args, client):
    info = client.create_snapshot(args.kinds or None, args.batchsize,
                                  args.namespace,
                                  allow_empty=args.allow_empty)
    if not args.run_async:
        info = _wait(args, client, info['id'], 'snapshot')
    return (int(info['status'] == 'error'), info,
            'Created Snapshot %d\n%s' % (info['id'],
                                          clitext.describe(info)))


def cmd_list(args, client):
    infos = client.list_snapshots(args.limit)
    return 0, infos, clitext.listing(infos)


def cmd_status(args, client):
    info = client.get_snapshot(args.id)
    return 0, info, clitext.describe(info)


def _dry_run(args, client, wait=True):
    """``(status, answer, text)`` of a dry run of the restore ``args``
    ask; ``answer`` is the restore call's, its ``plan`` waited for."""
    answer = client.restore_snapshot(args.id, kinds=args.kinds,
                                     dry_run=True)
    if not wait:
        return 0, answer, 'Dry run of snapshot %s: %s' % (
            args.id, answer['plan']['status'])
    dry_run = _wait(args, client, args.id, 'plan', answer['plan']['id'])
    answer = dict(answer, plan=dry_run)
    if dry_run['status'] != 'finished':
        return 1, answer, 'Dry run of snapshot %s: %s%s' % (
            args.id, dry_run['status'], ': ' + dry_run['error']
            if dry_run['error'] else '')
    return 0, answer, clitext.plan(dry_run['plan'])


def cmd_restore(args, client):
    if args.dry_run:
        status, answer, text = _dry_run(args, client, not args.run_async)
        return status, answer, text if (
            status or args.run_async) else 'Dry run, nothing written.\n' + text
    if not args.yes:
        cliask.can_ask(args)  # before the dry run, which takes a while
        status, answer, text = _dry_run(args, client)
        if status:
            return status, answer, text
        deleted = sum(counts['deleted']
                      for counts in answer['plan']['plan'].values())
        if deleted:
            text += '\nIt would delete %s.' % clitext.entities(deleted)
        if not cliask.confirm(args, 'What a restore of snapshot %s would '
                              'change, by a dry run:\n%s' % (args.id, text),
                              'Restore snapshot %s?' % args.id):
            return cliask.DECLINED
    answer = client.restore_snapshot(args.id, kinds=args.kinds)
    if not args.run_async:
        answer = dict(answer, restore=_wait(args, client, args.id, 'restore',
                                            answer['restore']['id']))
    restore = answer['restore']
    # A wait ends finished or failed; without one, only a failure is known.
    text = 'Restore of snapshot %s: %s' % (args.id, restore['status'])
    if restore['status'] == 'finished':
        text += ', %d entities put back, %d deleted' % (
            restore['entities'], restore['deleted'])
    return int(restore['status'] == 'error'), answer, text


def cmd_delete(args, client):
    if not args.yes:
        cliask.can_ask(args)
        info = client.get_snapshot(args.id)
        if not cliask.confirm(args, 'Delete snapshot %s (%s, kinds %s, %s '
                              'entities) and its stored data.' % (
                                  info['id'], info['status'],
                                  ', '.join(info['kinds']),
                                  info['progress']['entities']),
                              'Delete snapshot %s?' % args.id):
            return cliask.DECLINED
    result = client.delete_snapshot(args.id)
    return 0, result, 'Deleted snapshot %s' % args.id


def cmd_prune(args, client):
    doomed = None  # --yes: what the app finds prunable
    if not args.yes:
        from .snapshot.statuses import prunable
        doomed = prunable([(info['id'], info['status'],
                            info['progress']['entities'])
                           for info in client.list_snapshots()], args.keep)
        if doomed and not cliask.confirm(
                args, 'Prune deletes snapshots: %s' % ', '.join(
                    map(str, doomed)), 'Delete %s?' % clitext.count(
                        len(doomed), 'snapshot')):
            return cliask.DECLINED
    # Of those asked about, only those the app still finds prunable go.
    result = client.prune(args.keep, doomed) if doomed != [] else {
        'deleted': []}
    return 0, result, 'Deleted snapshots: %s' % (
        ', '.join(map(str, result['deleted'])) or 'none')


def cmd_worker(args, client):
    result = client.run_worker(seconds=args.seconds, wait=args.wait,
                               threads=args.threads)
    return 0, result, clitext.worker_ran(result)


def cmd_serve(args, client):
    from .server import LocalServer
    server = LocalServer(args.local, host=args.host, port=args.port,
                         token=args.token, no_token=args.no_token,
                         threads=args.threads)
    # The token, if made up: here, and only here.
    _out(_render(args, {'url': '%s/lovely.gae/' % server.url, 'token': (
        server.token if server.generated_token else None)},
        server.describe()))
    server.run()
    return 0, None, None


def cmd_demo(args, client):
    from . import demo
    identical, steps, lines = demo.run()
    return 0 if identical else 1, steps, '\n'.join(lines)


COMMANDS = {'create': cmd_create, 'list': cmd_list, 'status': cmd_status,
            'restore': cmd_restore, 'delete': cmd_delete, 'prune': cmd_prune,
            'download': clifiles.cmd_download,
            'upload': clifiles.cmd_upload,
            'verify': cliinfo.cmd_verify, 'inspect': cliinfo.cmd_inspect,
            'queue': cliinfo.cmd_queue, 'serve': cmd_serve,
            'worker': cmd_worker, 'demo': cmd_demo}


def build_parser(json_errors=False):
    """The parser of ``lovely-gae`` (``cliparse``)."""
    return cliparse.build_parser(COMMANDS, json_errors)


def _run(args):
    """The command's ``(status, data, text)``, its datastore file saved."""
    if getattr(args, 'file', None) is not None:
        # Before any datastore is opened; an upload reads its file twice.
        cliinfo.check_file(args.file, twice=args.command == 'upload')
    if args.where == 'none':
        return args.func(args, None)
    if args.url:
        from .snapshot.transfer.remote import RemoteClient
        with RemoteClient(args.url, args.token) as args.client:
            return args.func(args, args.client)
    # The SDK only now: --help and usage errors answer without it.
    from .local import LocalClient, local_datastore
    from .snapshot.waiting import StillWorking
    path = args.datastore or defaults.DATASTORE_FILE
    if getattr(args, 'file', None) is not None:
        cliinfo.check_apart(args.file, path)  # before it is locked
    from .snapshot.progress import loading_bar
    with local_datastore(path, args.app_id, save=args.writes,
                         command='lovely-gae ' + args.command,
                         progress=loading_bar(path, args.json),
                         must_exist=not args.writes) as args.local:
        args.client = LocalClient()
        _other_apps(args)
        try:
            status, data, text = args.func(args, args.client)
        except StillWorking as error:
            late = error  # the work done so far is saved, then it says so
        else:
            if getattr(args, 'run_async', False) and text and not status:
                # Locally nothing runs queued work but a worker.
                first, sep, rest = text.partition('\n')
                text = first + '; ' + clitext.RUN_WORKER + sep + rest
            return status, data, text
    late.hint = clitext.RUN_WORKER
    raise late


def _other_apps(args):
    """Warn, on stderr, of a file whose entities are all of other app
    ids: a development datastore's file uploaded into with ``--app-id``,
    opened without it, would look empty."""
    from google.appengine.api import datastore_types
    from .filestub import app_ids
    found = app_ids(args.local.stub)
    app_id = datastore_types.ResolveAppId(None)
    if found and app_id not in found and not args.json:
        print('lovely-gae: warning: ' + clitext.printable(clitext.other_apps(
            args.local.path, found, app_id)), file=sys.stderr)


def _terminate(signum, frame):
    # Unwinds like any exception, so that finally blocks remove temporary
    # files; one more SIGTERM must not cut that short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def _sigterm_exits():
    """SIGTERM ends the command as Ctrl-C would, with exit status 143."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may handle signals
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stdout_to_devnull():
    """Spare the exit a second broken pipe when Python flushes stdout."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    with contextlib.suppress(OSError, ValueError):
        os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _fail(args, error, status, prefix='lovely-gae: error: '):
    """Say ``error`` on stderr (as JSON with ``--json``); ``status``."""
    if args.json:
        line = json.dumps(clitext.error_data(error, status), sort_keys=True,
                          default=str)
    else:
        line = clitext.printable(prefix + str(error))
        if isinstance(error, AccessDenied) and error.status == 401:
            line += '; pass --token or set $%s' % defaults.TOKEN_ENV
        if getattr(error, 'hint', None):
            line += '; ' + error.hint
    print(line, file=sys.stderr)
    return status


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(json_errors='--json' in argv)
    args = cliparse.parse(parser, argv)
    cliparse.check_usage(parser, args)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format='%(levelname)s %(name)s: %(message)s')
    with _sigterm_exits():
        try:
            status, data, text = _run(args)
            _out(_render(args, data, text))
            return status
        except cliask.Refused as error:
            return _fail(args, error, 2,
                         'lovely-gae %s: error: ' % args.command)
        except _StdoutClosed:
            _stdout_to_devnull()
            return EXIT_STDOUT_CLOSED
        except (LovelyGaeError, OSError, ValueError) as error:
            if args.debug:
                raise
            return _fail(args, error, 1)
        except KeyboardInterrupt as error:
            interrupted = Interrupted('interrupted')
            if getattr(error, 'hint', None):
                interrupted.hint = error.hint  # a download's ranges kept
            return _fail(args, interrupted, 130, 'lovely-gae: ')


def download_snapshot(argv=None):
    """The seed's ``download_snapshot`` script: ``lovely-gae download``."""
    return main(['download'] + list(sys.argv[1:] if argv is None else argv))


if __name__ == '__main__':
    sys.exit(main())
