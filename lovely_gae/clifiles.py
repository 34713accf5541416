"""``lovely-gae download`` and ``upload``: a snapshot into a file, a file
into a datastore, personal data masked on the way if asked (``--mask``)."""
import os
import sys

from . import cliask, clitext

__all__ = ['cmd_download', 'cmd_upload']


def _remote(args):
    """The ``url`` the client functions take: the remote client, or None."""
    return args.client if args.url else None


def _mask(args):
    """The ``rewrite.Mask`` of ``--mask``, or None."""
    if not args.mask:
        return None
    from .snapshot.transfer.rewrite import Mask
    return Mask(args.mask, args.allow_unmatched_mask)


def _unmatched(args, mask, data):
    """Say the masks that matched nothing (``--allow-unmatched-mask``), in
    ``data`` and, without ``--json``, on stderr."""
    if mask is not None and mask.unmatched():
        data['unmatched_masks'] = mask.unmatched()
        if not args.json:
            print('lovely-gae: warning: --mask %s matched no property'
                  % clitext.printable(', '.join(mask.unmatched())),
                  file=sys.stderr)


def cmd_download(args, client):
    from .snapshot import client as snapshot_client
    mask = _mask(args)
    try:
        path = snapshot_client.download_snapshot(
            args.out_dir, args.id, url=_remote(args),
            target_app_id=args.target_app_id,
            target_namespace=args.target_namespace, scrub=mask,
            progress=snapshot_client.progress_for(args.json))
    except BaseException as error:  # Ctrl-C too: it resumes all the same
        if getattr(error, 'kept', None):
            error.hint = clitext.kept(error.kept)
        raise
    snapshot_id = int(os.path.basename(path).rsplit('.', 1)[1])
    data = {'id': snapshot_id, 'path': path}
    _unmatched(args, mask, data)
    from .snapshot.transfer.devfile import first_app_id
    data['app_id'] = first_app_id(path)
    if data['app_id'] is not None and not args.json:  # after 'Saving to'
        print(clitext.keys_of([data['app_id']]), file=sys.stderr)
    return 0, data, None  # progress named it


def cmd_upload(args, client):
    from .snapshot import client as snapshot_client
    from .snapshot.progress import progress_for
    if not args.yes:
        from .snapshot.transfer import devfile
        cliask.can_ask(args, 'replaces entities')  # before reading the file
        counts = devfile.check_file(args.file)
        if not cliask.confirm(args, 'Upload %s into %s: %d entities (%s); '
                              'entities with the same keys are replaced.' % (
                                  args.file, args.url or args.local.path,
                                  sum(counts.values()), ', '.join(
                                      '%s %d' % item
                                      for item in sorted(counts.items()))),
                              'Upload %s?' % args.file, 'replaces entities'):
            return cliask.DECLINED
    mask = _mask(args)
    try:
        count = snapshot_client.upload_snapshot(
            args.file, url=_remote(args),
            target_namespace=args.target_namespace, scrub=mask,
            progress=progress_for(args.json, stream=sys.stderr))
    except BaseException as error:  # Ctrl-C too
        # Through an app, what was put stays put; a datastore file keeps
        # what it held (it is saved only when a command succeeds).
        if args.url and getattr(error, 'put', None):
            error.hint = clitext.put(error.put)
        raise
    data = {'file': args.file, 'entities': count}
    _unmatched(args, mask, data)
    return 0, data, 'Uploaded %d entities from %s' % (count, args.file)
