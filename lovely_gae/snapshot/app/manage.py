"""Snapshots as JSON resources: list, create, show, restore (and show a
restore), delete, prune.

Each answer is what ``snapshot.calls`` gives, the shape ``LocalClient``
returns too. Writes are POST only, so a link or an image tag in a page
can never start one.
"""
from webob import exc

from ...exceptions import (InvalidInput, RangeCorrupted, RestoreNotFound,
                           RestoreRunning, SnapshotIncomplete, SnapshotInUse,
                           SnapshotNotFinished)
from .. import api, calls
from .access import refuse
from .web import (allow, ascii_int, bool_param, ids_param, int_param,
                  json_response, snapshot_number, snapshot_or_404)

__all__ = ['snapshots', 'show', 'restore', 'show_restore', 'delete', 'prune']

def create_from(request):
    """Create a snapshot from ``kinds``, ``batchsize``, ``namespace`` and
    ``allow_empty`` (default true: a kind without entities is snapshotted).

    A bad value is a 400 with its one-line reason, and creates nothing.
    """
    params = request.params
    allow_empty = bool_param(request, 'allow_empty', default=True)
    try:
        return api.create_snapshot(kinds=params.getall('kinds') or None,
                                   batchsize=_batchsize(params),
                                   namespace=params.get('namespace'),
                                   allow_empty=allow_empty)
    except InvalidInput as error:
        raise refuse(exc.HTTPBadRequest, str(error)) from error


def _batchsize(params):
    """``batchsize`` as an int, for ``api`` to check; None if not given."""
    value = params.get('batchsize')
    if value is None:
        return None
    number = ascii_int(value)
    if number is None:
        # api's own check would read ' 1' or '١' as 1, and fail on a
        # string of 5000 digits.
        raise InvalidInput('batchsize', value[:40],
                           'must be an integer from 1 to %d'
                           % api.MAX_BATCH_SIZE)
    return number


@allow('GET', 'POST')
def snapshots(request):
    """GET: a page of the snapshots, newest first (``limit``, ``after``:
    see ``calls.list_snapshots``); POST: create one.

    POST takes ``kinds`` (repeated; none: every kind), ``batchsize``,
    ``namespace`` and ``allow_empty`` (false: a kind without entities is a
    400), and answers 201 with the new snapshot.
    """
    if request.method == 'POST':
        return json_response(calls.get_snapshot(create_from(request)),
                             status=201)
    limit = int_param(request, 'limit', minimum=1,
                      maximum=calls.MAX_LIST_PAGE)
    after = request.GET.getall('after')  # UTF-8: ``web.read_params``
    if len(after) > 1:
        raise refuse(exc.HTTPBadRequest, 'invalid after: send one cursor')
    try:
        return json_response(calls.list_snapshots(
            limit, after[0] if after else None))
    except InvalidInput as error:
        raise refuse(exc.HTTPBadRequest, str(error)) from error


@allow('GET')
def show(request):
    """One snapshot (``latest``: the newest finished one)."""
    return json_response(calls.get_snapshot(
        snapshot_or_404(request.urlvars['id'])))


@allow('POST')
def restore(request):
    """Start a restore of ``kinds`` (repeated; default all) or a dry run.

    Both answer 202 with the restore started (``restore``, or ``plan`` for
    a dry run), and run as tasks: ``show_restore`` of its ``id`` shows how
    far it is, and a dry run's ``plan`` what would change per kind once it
    has finished.
    """
    snap = snapshot_or_404(request.urlvars['id'])
    kinds = request.params.getall('kinds') or None
    dry_run = bool_param(request, 'dry_run')
    try:
        answer = calls.restore_snapshot(snap, kinds=kinds, dry_run=dry_run)
    except (SnapshotNotFinished, RestoreRunning, RangeCorrupted,
            SnapshotIncomplete) as error:
        raise refuse(exc.HTTPConflict, str(error)) from error
    except InvalidInput as error:
        raise refuse(exc.HTTPBadRequest, str(error)) from error
    return json_response(answer, status=202)


@allow('GET')
def show_restore(request):
    """One restore or dry run of a snapshot, by its id: one get by key."""
    snapshot_id = snapshot_number(request.urlvars['id'])
    try:
        return json_response(calls.get_restore(snapshot_id,
                                               request.urlvars['restore']))
    except InvalidInput as error:
        raise refuse(exc.HTTPBadRequest, str(error)) from error
    except RestoreNotFound as error:
        raise refuse(exc.HTTPNotFound, str(error)) from error


@allow('POST')
def delete(request):
    """Delete a snapshot and its stored ranges (a task finishes big ones)."""
    snap = snapshot_or_404(request.urlvars['id'])
    try:
        return json_response(calls.delete_snapshot(snap))
    except SnapshotInUse as error:
        raise refuse(exc.HTTPConflict, str(error)) from error


@allow('GET', 'POST', writes=True)
def prune(request):
    """Keep the newest ``keep`` finished snapshots that hold entities;
    answer the ids deleted. GET too: App Engine cron sends GET.

    ``only`` (repeated): the ids the caller agreed to delete; of them, only
    those still prunable go.
    """
    keep = int_param(request, 'keep')
    if keep is None:
        raise refuse(exc.HTTPBadRequest, 'keep is required')
    return json_response(calls.prune(keep, ids_param(request, 'only')))
