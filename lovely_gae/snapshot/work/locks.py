"""One restore of a kind of a namespace at a time: a lock entity a kind.

All locks are children of one root, so that a restore's start takes them
all in one entity group of its transaction, and its end frees them (in
the transaction that says it failed; with the record that says it
finished). A task that puts entities back reads its kind's lock with the
restore's record, and writes only while the lock is its restore's
(``lost``): a late copy of a task of a restore that has failed meanwhile
finds it free, or another's. Only a restore's own locks are ever freed
(``mine``).
"""
from google.appengine.ext import db

from ... import defaults
from ...base import LibraryModel
from ...exceptions import RestoreRunning

__all__ = ['Lock', 'keys', 'take', 'mine', 'lost', 'free', 'held']


class Lock(LibraryModel):
    """A kind of a namespace that a restore is putting back."""

    restore_id = db.StringProperty(indexed=False)
    snapshot_id = db.IntegerProperty(indexed=False)

    @classmethod
    def kind(cls):
        return 'LovelyGaeRestoreLock'

    @classmethod
    def root(cls):
        return db.Key.from_path(cls.kind(), 'locks',
                                namespace=defaults.NAMESPACE)

    @classmethod
    def key_of(cls, namespace, kind):
        return db.Key.from_path(cls.kind(), '%s:%s' % (namespace, kind),
                                parent=cls.root())


def keys(record):
    """The keys of the locks of ``record``'s kinds."""
    return [Lock.key_of(record.namespace, kind) for kind in record.kinds]


def take(record, found):
    """The locks of ``record``'s kinds, unsaved; ``RestoreRunning`` if one
    is held (inside the transaction that saves them). ``found``: those
    locks as the caller read them, in the order of ``keys``."""
    wanted = keys(record)
    for key, held in zip(wanted, found):
        if held is not None:
            raise RestoreRunning(key.name().split(':', 1)[1],
                                 record.namespace, held.snapshot_id,
                                 held.restore_id)
    return [Lock(key=key, restore_id=record.id,
                 snapshot_id=record.snapshot_id) for key in wanted]


def mine(record, found):
    """The keys of the locks among ``found`` (as read) that ``record``
    holds."""
    return [lock.key() for lock in found
            if lock is not None and lock.restore_id == record.id]


def lost(record, kind, found):
    """Why ``record`` may not put ``kind`` back, ``found`` being the lock
    of ``kind`` as read with it: None while it holds it, or if it is a dry
    run (which holds none)."""
    if record.dry_run or found is not None and found.restore_id == record.id:
        return None
    holder = ('its lock is free' if found is None
              else 'restore %s holds it' % found.restore_id)
    return ('restore %s no longer holds kind %r of namespace %r (%s): it '
            'puts nothing back' % (record.id, kind, record.namespace, holder))


def free(record):
    """Delete the locks ``record`` holds (in its ending transaction)."""
    held = mine(record, db.get(keys(record)))
    if held:
        db.delete(held)


def held():
    """Every lock held (strongly consistent: one entity group)."""
    return Lock.all().ancestor(Lock.root())
