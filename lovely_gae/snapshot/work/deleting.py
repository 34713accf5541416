"""Deleting a snapshot: never while a restore of it holds a kind; its
restores are forgotten, then what is stored of it goes."""
from google.appengine.ext import db

from ... import completion
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
    forget(snap.id)
    ranges.delete_snapshot(snap, ended)


def forget(snapshot_id):
    """Delete the restores of a snapshot and what they left behind."""
    for record in Restore.all().filter('snapshot_id =', snapshot_id):
        if record.status in (RestoreStatus.CHECKING.value,
                             RestoreStatus.RUNNING.value):
            restore_failed('its snapshot was deleted', record.id)
        for phase in ('check', 'write', 'plan'):
            completion.purge(record.job(phase))
        db.delete(record.key())


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
