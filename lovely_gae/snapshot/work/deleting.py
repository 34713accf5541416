"""Deleting a snapshot: never while a restore of it holds a kind; its
restores are stopped, then what is stored of it goes, their records and
markers with it."""
from google.appengine.ext import db

from ...base import transaction
from ...exceptions import SnapshotInUse
from . import locks, ranges
from .restore import restore_failed
from ..models import ACTIONS, Snapshot
from ..restores import Restore, RestoreStatus

__all__ = ['delete', 'mark_deleting', 'forget']


def delete(snap):
    """Delete ``snap`` and what is stored of it (see ``Snapshot.delete``)."""
    ended = snap.status == Snapshot.STATUS_FINISHED
    mark_deleting(snap.id)
    restored = forget(snap.id)
    ranges.delete_snapshot(snap, ended and not restored)


def forget(snapshot_id):
    """Stop the restores (and dry runs) of a snapshot that still run;
    return whether it has any. Their records and markers go with what is
    stored of it (``ranges.delete_snapshot``), and once more after a
    lease: a task of one, or a late copy, may still end it and store its
    record back."""
    restored = False
    for record in Restore.all().filter('snapshot_id =', snapshot_id):
        restored = True
        if record.status in (RestoreStatus.CHECKING.value,
                             RestoreStatus.RUNNING.value):
            restore_failed('its snapshot was deleted', record.id)
    return restored


def mark_deleting(snapshot_id):
    """Mark a snapshot ``deleting``, unless a restore of it holds a kind
    (``SnapshotInUse``): in one transaction with the locks, so that no
    restore of it starts from then on."""
    def mark():
        snap = db.get(Snapshot.key_for(snapshot_id))
        if snap is None:
            return
        for lock in locks.held():
            if lock.snapshot_id == snapshot_id:
                raise SnapshotInUse(snapshot_id, lock.restore_id)
        snap.status = Snapshot.STATUS_DELETING
        snap.put()
    transaction(mark)


ACTIONS['delete'] = delete
