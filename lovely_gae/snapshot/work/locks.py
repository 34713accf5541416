"""One restore of a kind of a namespace at a time: a lock entity a kind,
named by its restore too.

All locks are children of one root: a restore's start reads them all
(an ancestor query, sent with its other read) and takes its own in one
entity group of its transaction, refused if another restore holds one of
its kinds; its end frees them (in the transaction that says it failed;
with the record that says it finished, by key, from every task that sees
the last part: named by the restore, a late one never frees the next
restore's). A task that puts entities back reads its own lock of its kind
with the restore's record, and writes only while it is there (``lost``):
a late copy of a task of a restore that has failed meanwhile finds it
gone. Only a restore's own locks are ever freed (``mine``).
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
    def key_of(cls, namespace, kind, restore_id):
        """A restore's lock of a kind: named by the restore too, so that
        whatever deletes it by key (a late copy of a task that ends it)
        never deletes the lock of the next restore of the kind."""
        return db.Key.from_path(cls.kind(), '%s:%s:%s' % (
            restore_id, namespace, kind), parent=cls.root())

    def locked(self):
        """``(namespace, kind)`` it locks."""
        _, namespace, kind = self.key().name().split(':', 2)
        return namespace, kind


def keys(record):
    """The keys of the locks of ``record``'s kinds."""
    return [Lock.key_of(record.namespace, kind, record.id)
            for kind in record.kinds]


def take(record, found):
    """The locks of ``record``'s kinds, unsaved; ``RestoreRunning`` if
    another restore holds one (inside the transaction that saves them).
    ``found``: every lock held (``held``), as read in it."""
    wanted = {(record.namespace, kind) for kind in record.kinds}
    for lock in found:
        if lock.restore_id != record.id and lock.locked() in wanted:
            namespace, kind = lock.locked()
            raise RestoreRunning(kind, namespace, lock.snapshot_id,
                                 lock.restore_id)
    return [Lock(key=key, restore_id=record.id,
                 snapshot_id=record.snapshot_id) for key in keys(record)]


def mine(record, found):
    """The keys of the locks among ``found`` (as read) that ``record``
    holds."""
    return [lock.key() for lock in found
            if lock is not None and lock.restore_id == record.id]


def lost(record, kind, found):
    """Why ``record`` may not put ``kind`` back, ``found`` being the lock
    of ``kind`` as read with it: None while it holds it, or if it is a dry
    run (which holds none)."""
    if record.dry_run or found is not None:
        return None
    return ('restore %s no longer holds kind %r of namespace %r: it puts '
            'nothing back' % (record.id, kind, record.namespace))


def free(record):
    """Delete the locks ``record`` holds (in its ending transaction)."""
    held = mine(record, db.get(keys(record)))
    if held:
        db.delete(held)


def held():
    """Every lock held (strongly consistent: one entity group)."""
    return Lock.all().ancestor(Lock.root())
