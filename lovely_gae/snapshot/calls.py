"""A client's calls on the datastore this process sees, as JSON-ready data.

Each shape is written here once: the app's JSON endpoints (``app.manage``,
``app.data``, ``app.worker``) answer what these functions return, and
``local.LocalClient`` returns the same, while ``transfer.remote.RemoteClient``
returns what the app answered. So a command shows the same data on a local
datastore file and over ``--url``. ``docs/cli.rst`` shows the shapes.
"""
from .. import async_
from . import api
from .models import Snapshot

__all__ = ['list_snapshots', 'get_snapshot', 'create_snapshot',
           'restore_snapshot', 'get_restore', 'delete_snapshot', 'prune', 'worker_ran',
           'uploaded', 'queued']


def list_snapshots(limit=None):
    """``{'snapshots': [snapshot, ...]}``, newest first."""
    return {'snapshots': [snap.to_dict()
                          for snap in api.list_snapshots(limit)]}


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
    return api.get_restore(snapshot_id, restore_id).to_dict()


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


def worker_ran(ran):
    """What a worker says after running ``ran`` tasks: ``{'ran', 'queued'}``."""
    return {'ran': ran, 'queued': queued()}


def uploaded(count):
    """What an upload of ``count`` entities answers: ``{'put': count}``."""
    return {'put': count}
