"""A client's calls on the datastore this process sees, as JSON-ready data.

Each shape is written here once: the app's JSON endpoints (``app.manage``,
``app.data``, ``app.worker``) answer what these functions return, and
``local.LocalClient`` returns the same, while ``transfer.remote.RemoteClient``
returns what the app answered. So a command shows the same data on a local
datastore file and over ``--url``. ``docs/cli.rst`` shows the shapes.
"""
import json

from .. import async_
from ..base import utcnow
from . import api
from .models import Snapshot

__all__ = ['list_snapshots', 'every_snapshot', 'get_snapshot',
           'create_snapshot', 'restore_snapshot', 'get_restore',
           'delete_snapshot', 'prune',
           'worker_ran', 'uploaded', 'queued', 'next_task', 'LIST_PAGE',
           'MAX_LIST_PAGE', 'LIST_BYTES']

#: Snapshots a page of a listing holds unless asked for another number:
#: a nightly cron makes a list of years, never to be one answer.
LIST_PAGE = 100

#: Snapshots a page of a listing holds at most, whatever it asks for.
MAX_LIST_PAGE = 1000

#: Bytes of JSON past which a page holds no further snapshot: a snapshot
#: of many kinds is long, and an answer stays well within what a client
#: reads (``RemoteClient.json_bytes``) and App Engine sends (32 MB).
LIST_BYTES = 4 << 20


def list_snapshots(limit=None, after=None):
    """A page of the snapshots, newest first: ``{'snapshots': [snapshot,
    ...], 'next': cursor}``, ``next`` to send back as ``after`` for the
    page after it (None after the last).

    A page holds ``limit`` snapshots (default ``LIST_PAGE``, at most
    ``MAX_LIST_PAGE``), fewer once its JSON passes ``LIST_BYTES``.
    """
    limit = min(limit or LIST_PAGE, MAX_LIST_PAGE)
    snaps = api.list_snapshots(limit + 1, after)  # one more: is there more?
    page, size = [], 0
    for data in Snapshot.to_dicts(snaps[:limit]):
        size += len(json.dumps(data, separators=(',', ':')))
        if page and size > LIST_BYTES:
            break
        page.append(data)
    more = len(page) < len(snaps)
    return {'snapshots': page,
            'next': api.snapshot_cursor(snaps[len(page) - 1]) if more
            else None}


def every_snapshot(limit=None):
    """Every snapshot (at most ``limit``), newest first, as a client that
    follows ``list_snapshots``' pages gets them: in the process that holds
    the datastore, one query, no pages."""
    return Snapshot.to_dicts(api.list_snapshots(limit))


def get_snapshot(snap):
    """A snapshot (a ``Snapshot`` or its id) as ``Snapshot.to_dict()``."""
    if not isinstance(snap, Snapshot):
        snap = api.get_snapshot(snap)
    return snap.to_dict()


def create_snapshot(kinds=None, batchsize=None, namespace=None,
                    allow_empty=True):
    """Start a snapshot (``api.create_snapshot``); the new snapshot."""
    return get_snapshot(api.create_snapshot(kinds, batchsize, namespace,
                                            allow_empty=allow_empty))


def restore_snapshot(snap, kinds=None, dry_run=False):
    """Start a restore of ``snap`` or its dry run: ``{'id': snapshot id,
    'dry_run': bool, 'restore' or 'plan': Restore.to_dict()}``, of the
    restore started (its ``id`` is what ``get_restore`` takes)."""
    snap.restore(kinds=kinds, dry_run=dry_run)  # names it on ``snap``
    if dry_run:
        return {'id': snap.id, 'dry_run': True, 'plan': snap.plan_progress()}
    return {'id': snap.id, 'dry_run': False,
            'restore': snap.restore_progress()}


def get_restore(snapshot_id, restore_id):
    """Restore (or dry run) ``restore_id`` of snapshot ``snapshot_id`` as
    ``Restore.to_dict()`` (``api.get_restore``)."""
    record, begun = api.get_restore(snapshot_id, restore_id)
    return record.to_dict(begun)


def delete_snapshot(snap):
    """Delete ``snap`` (a task finishes a big one): ``{'deleted': [id]}``."""
    snap.delete()
    return {'deleted': [snap.id]}


def prune(keep, only=None):
    """``api.prune(keep, only)``: ``{'deleted': [id, ...]}``."""
    return {'deleted': api.prune(keep, only)}


def queued():
    """How many tasks wait, counted up to 1000."""
    return async_.count_tasks(limit=1000)


def next_task():
    """The task that falls due next: ``{'task': 'purge_snapshot(605)'
    (``Task.describe``), 'due': its time (ISO, UTC), 'due_in': seconds
    from now (0 once due), 'held': whether a worker's lease holds it
    (``due`` is then the lease's end)}``; None if no task waits."""
    first = async_.next_task()
    if first is None:
        return None
    task, held = first
    return {'task': task.describe(), 'due': task.due.isoformat() + 'Z',
            'due_in': round(max(0.0, (task.due - utcnow()).total_seconds()),
                            1),
            'held': held}


def worker_ran(ran):
    """What a worker says after running ``ran`` tasks: ``{'ran', 'queued',
    'next'}``, ``next`` as ``next_task``."""
    return {'ran': ran, 'queued': queued(), 'next': next_task()}


def uploaded(count):
    """What an upload of ``count`` entities answers: ``{'put': count}``."""
    return {'put': count}
