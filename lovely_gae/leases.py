"""Leases: how a worker holds the tasks it runs.

A lease takes a batch of due tasks out of the queue in one cross-group
transaction: it reads them (so that a rival lease of any of them collides),
deletes them, and stores them, as leased, in one lease entity of its own.
No other worker sees them while the lease holds. Deleting the lease entity
finishes the whole batch; a task that failed went back to the queue before,
with its error. A worker that dies leaves its lease entity behind: once it
has expired, ``recover`` puts its tasks back in the queue as they were
leased (unless the queue holds them again), and they run again.

Per task that is one read and one delete, plus a share of one entity per
batch, where leasing in place took a read, a write and a later delete.
"""
import logging

from google.appengine.api import datastore
from google.appengine.datastore import datastore_rpc
from google.appengine.datastore import entity_bytes_pb2 as entity_pb2
from google.appengine.ext import db

from . import defaults, entities, taskstore
from .base import retrying, transaction, utcnow

__all__ = ['KIND', 'LeasedTask', 'lease', 'finish', 'holds', 'release',
           'recover', 'next_expiry', 'leased_entities']

log = logging.getLogger(__name__)

KIND = 'LovelyGaeLease'

#: Tries of a lease whose commit collides with another worker's.
_TRIES = 20

#: Bytes of tasks a lease entity holds at most (a first task always fits:
#: ``taskstore.MAX_PAYLOAD`` keeps every task well below
#: ``defaults.MAX_ENTITY_BYTES``).
_HOLD_BYTES = defaults.PART_SIZE

_XG = datastore_rpc.TransactionOptions(xg=True)


class LeasedTask:
    """A task this worker holds: what running it needs, read from its proto.

    ``entity`` is the task as leased (``due`` is the lease's end).
    """

    __slots__ = ('entity', 'func', 'payload', 'attempts', 'max_attempts',
                 'lease')

    def __init__(self, entity, props, attempts, token):
        self.entity = entity
        self.func = props['func'].value.stringValue.decode('utf-8')
        payload = props.get('payload')
        self.payload = (payload.value.stringValue.decode('utf-8')
                        if payload is not None else None)
        max_attempts = props.get('max_attempts')
        self.max_attempts = (max_attempts.value.int64Value
                             if max_attempts is not None else None)
        self.attempts = attempts
        self.lease = token

    @property
    def name(self):
        return self.entity.key.path.element[-1].name

    def __repr__(self):
        return '<LeasedTask %s attempts=%s>' % (self.func, self.attempts)


def _key(token):
    return db.Key.from_path(KIND, token, namespace=defaults.NAMESPACE)


def _lease_one(pb, token, now, until):
    """Lease the task of ``pb`` (changed in place) if it is due; else None."""
    props = taskstore.properties(pb)
    due = props.get('due')
    if (due is None or not due.value.HasField('int64Value')
            or due.value.int64Value > now):
        return None
    attempts = props['attempts'].value.int64Value + 1 \
        if 'attempts' in props else 1
    leased = LeasedTask(pb, props, attempts, token)
    due.value.int64Value = until
    taskstore.emptied_value(props, pb, 'lease').stringValue = (
        token.encode('ascii'))
    taskstore.emptied_value(props, pb, 'attempts').int64Value = attempts
    return leased


def _holder(token, until):
    """The lease entity, still without its tasks: its end is indexed."""
    pb = entity_pb2.EntityProto()
    pb.key.CopyFrom(entities.ref(_key(token)))
    pb.entity_group.element.add().CopyFrom(pb.key.path.element[0])
    taskstore.add_property(pb.property, 'due', taskstore.WHEN).int64Value = (
        until)
    return pb


def _try_lease(refs, token, seconds):
    """One lease transaction: ``(leased tasks, refs left for another
    lease)``, or None if it collided."""
    now = taskstore.micros(utcnow())
    until = now + int(seconds * 1e6)
    holder = _holder(token, until)
    txn = entities.connection().new_transaction(_XG)
    try:
        leased, size = [], 0
        for index, pb in enumerate(txn.get(refs)):
            task = pb is not None and _lease_one(pb, token, now, until)
            if not task:
                continue
            data = pb.SerializeToString()
            size += len(data)
            if leased and size > _HOLD_BYTES:
                break
            taskstore.add_property(
                holder.raw_property, 'tasks', entity_pb2.Property.BLOB,
                multiple=True).stringValue = data
            leased.append(task)
        else:
            index = len(refs)
        if leased:
            txn.put([holder])
            txn.delete([task.entity.key for task in leased])
    except Exception:
        _rollback(txn)
        raise
    # As db.run_in_transaction: False is a collision; None, nothing to write.
    return None if txn.commit() is False else (leased, refs[index:])


def _rollback(txn):
    try:
        txn.rollback()
    except Exception:
        log.warning('rollback of a lease failed', exc_info=True)


def lease(refs, token, seconds):
    """Lease the tasks of ``refs`` that are still due, for ``seconds``.

    Returns ``(leased, rest)``: the ``LeasedTask``s ([] if other workers
    leased them first), and the refs that did not fit in this lease's
    entity. ``token`` names the lease; end it with ``finish`` or
    ``release``.
    """
    for _ in range(_TRIES):
        result = retrying(_try_lease, refs, token, seconds)
        if result is not None:
            return result
    return [], []


def finish(token):
    """End a lease whose tasks ran: the ones that succeeded are gone."""
    entities.delete([entities.ref(_key(token))])


def holds(token):
    """Whether the lease still holds (in a transaction: and keeps holding)."""
    return datastore.Get([_key(token)])[0] is not None


def _restore(key, copies):
    """End the lease of ``key``; its tasks ``copies`` go back to the queue,
    unless it holds them again (deferred anew, or failed and retried)."""
    keys = [entities.key(pb.key) for pb in copies]
    back = [datastore.Entity.FromPb(pb) for pb, found in
            zip(copies, datastore.Get(keys)) if found is None]
    if back:
        datastore.Put(back)
    datastore.Delete(key)


def release(token, tasks):
    """Give back leased ``tasks`` this worker will not run after all.

    Run it in a transaction; the lease ends.
    """
    if not holds(token):
        return
    now = taskstore.micros(utcnow())
    copies = []
    for task in tasks:
        pb = task.entity
        props = taskstore.properties(pb)
        props['due'].value.int64Value = now
        taskstore.emptied_value(props, pb, 'lease')
        taskstore.emptied_value(props, pb, 'attempts').int64Value = (
            task.attempts - 1)
        copies.append(pb)
    _restore(_key(token), copies)


def _copies(holder):
    return [entity_pb2.EntityProto.FromString(bytes(blob))
            for blob in holder.get('tasks') or ()]


def _recover(key, now):
    holder = datastore.Get([key])[0]
    if holder is None or holder['due'] > now:
        return 0
    copies = _copies(holder)
    _restore(key, copies)
    log.warning('lease %s expired: %d tasks back in the queue', key.name(),
                len(copies))
    return len(copies)


def _query(keys_only=False):
    return datastore.Query(KIND, namespace=defaults.NAMESPACE,
                           keys_only=keys_only)


def recover(now):
    """Give back the tasks of leases that expired by ``now``; how many."""
    query = _query(keys_only=True)
    query['due <='] = now
    return sum(transaction(_recover, key, now) for key in query.Run())


def next_expiry():
    """When the next lease ends (None if none holds)."""
    query = _query()
    query.Order('due')
    found = query.Get(1)
    return found[0]['due'] if found else None


def leased_entities():
    """The ``EntityProto`` of every task held by a lease, as leased."""
    return [pb for holder in _query().Run() for pb in _copies(holder)]
