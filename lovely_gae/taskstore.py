"""Where the queue keeps its tasks: one storage contract, on the datastore.

``async_`` keeps tasks through these functions only. In pairs: ``enqueue``
and ``delete`` tasks, ``get`` them by name; ``due`` lists what to
``lease``, which ``finish`` (they ran) or ``release`` (unrun) end, while it
``holds``; ``recover`` gives back the tasks of expired leases; a task that
failed is stored to ``retry`` or as ``fail``-ed; ``queued``, ``leased``
and ``failed`` list tasks, ``size`` counts them, ``next_task`` and
``next_due`` say what there is to do next, and when.

A task is an entity (``tasks.Task.to_proto``) whose one indexed property
is ``due``. The hot path (put, find the due ones, lease) works on
``EntityProto`` messages, not ``db.Model``: most of a task's cost on the
datastore is converting its properties.

A lease takes a batch of due tasks out of the queue in one cross-group
transaction: it reads them (so that a rival lease of any of them collides),
deletes them, and stores them, as leased, in one lease entity of its own.
No other worker sees them while the lease holds. Deleting the lease entity
finishes the whole batch (a task that failed went back to the queue
before). A worker that dies leaves its lease entity behind: once it has
expired, ``recover`` puts its tasks back in the queue as they were leased
(unless the queue holds them again), and they run again. Per task that is
one read and one delete, plus a share of one entity per batch.
"""
import datetime
import logging

from google.appengine.api import datastore, datastore_types
from google.appengine.datastore import datastore_query, datastore_rpc
from google.appengine.datastore import entity_bytes_pb2 as entity_pb2

from . import defaults, entities
from .base import retrying, transaction
from .tasks import EPOCH, KIND, Field, Task, reference as _ref

__all__ = ['KIND', 'LEASE_KIND', 'BATCH', 'HOLD_BYTES', 'enqueue', 'get',
           'delete', 'due', 'lease', 'finish', 'release', 'holds', 'recover',
           'retry', 'fail', 'queued', 'leased', 'failed', 'size', 'next_task',
           'next_due']

log = logging.getLogger(__name__)

LEASE_KIND = 'LovelyGaeLease'

#: Due tasks handed to one lease. A cross-group transaction spans at most
#: ``defaults.MAX_TRANSACTION_GROUPS`` entity groups: every task is one,
#: and the lease entity another.
BATCH = 20

#: Tries of a lease whose commit collides with another worker's.
_TRIES = 20

#: Bytes of tasks a lease entity holds at most (a first task always fits:
#: ``tasks.MAX_PAYLOAD`` keeps every task well below
#: ``defaults.MAX_ENTITY_BYTES``).
HOLD_BYTES = defaults.PART_SIZE

_XG = datastore_rpc.TransactionOptions(xg=True)
_BLOB = entity_pb2.Property.BLOB

#: A lease entity's one property: when it ends (indexed, as a task's).
_DUE = Field('due', 'when', indexed=True)


def _key(name, kind=KIND):
    return entities.key(_ref(name, kind))


def enqueue(tasks):
    """Store ``tasks``, new or again; inside a transaction, with it."""
    entities.put([task.to_proto() for task in tasks])


def get(names):
    """The stored tasks of key names ``names`` (None where there is none:
    done, failed... or held by a lease)."""
    return [pb and Task.from_proto(pb)
            for pb in entities.get([_ref(name) for name in names])]


def delete(names):
    """Remove the tasks ``names``; inside a transaction, with it."""
    entities.delete([_ref(name) for name in names])


def _query(kind, *filters, order=None, keys_only=False, limit=None):
    """The results of a query of ``kind``: protos (or references)."""
    predicate = (datastore_query.CompositeFilter(
        datastore_query.CompositeFilter.AND, list(filters))
        if len(filters) > 1 else filters[0] if filters else None)
    query = datastore_query.Query(
        app=datastore_types.ResolveAppId(None), namespace=defaults.NAMESPACE,
        kind=kind, filter_predicate=predicate,
        order=order and datastore_query.PropertyOrder(order))
    options = datastore_query.QueryOptions(
        keys_only=keys_only, limit=limit, batch_size=defaults.TASK_BATCH)
    for batch in query.run(entities.connection(), options):
        yield from batch.results


def _waiting(cutoff=None, **options):
    """Tasks waiting in the queue (due by ``cutoff``), oldest due first:
    ``due >= EPOCH`` leaves the failed ones out."""
    filters = [datastore_query.make_filter('due', '>=', EPOCH)]
    if cutoff is not None:
        filters.append(datastore_query.make_filter('due', '<=', cutoff))
    return _query(KIND, *filters, order='due', **options)


def due(cutoff, limit=None):
    """References of the tasks due by ``cutoff`` (the first ``limit`` of
    them, if given), in lists of ``BATCH``."""
    batch = []
    for reference in _waiting(cutoff, keys_only=True, limit=limit):
        batch.append(reference)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _holder(token, until):
    """The lease entity, still without its tasks: its end is indexed."""
    pb = entity_pb2.EntityProto()
    pb.key.CopyFrom(_ref(token, LEASE_KIND))
    pb.entity_group.element.add().CopyFrom(pb.key.path.element[0])
    _DUE.write(pb, until)
    return pb


def _try_lease(refs, token, now, until):
    """One lease transaction: ``(leased tasks, refs left for another
    lease)``, or None if it collided."""
    holder = _holder(token, until)
    txn = entities.connection().new_transaction(_XG)
    try:
        leased, size = [], 0
        for index, pb in enumerate(txn.get(refs)):
            task = pb and Task.from_proto(pb)
            if task is None or task.due is None or task.due > now:
                continue
            task.attempts, task.due, task.lease = task.attempts + 1, until, \
                token
            data = task.to_proto().SerializeToString()
            size += len(data)
            if leased and size > HOLD_BYTES:
                break
            prop = holder.raw_property.add()
            prop.name, prop.multiple = 'tasks', True
            prop.meaning, prop.value.stringValue = _BLOB, data
            leased.append(task)
        else:
            index = len(refs)
        if leased:
            txn.put([holder])
            txn.delete([_ref(task.name) for task in leased])
    except Exception:
        try:
            txn.rollback()
        except Exception:
            log.warning('rollback of a lease failed', exc_info=True)
        raise
    # As db.run_in_transaction: False is a collision; None, nothing to write.
    return None if txn.commit() is False else (leased, refs[index:])


def lease(refs, token, now, seconds):
    """Lease the tasks of ``refs`` that are due by ``now``, for ``seconds``.

    Returns ``(leased, rest)``: the tasks as leased ([] if other workers
    leased them first), and the refs that did not fit in this lease's
    entity. ``token`` names the lease; end it with ``finish`` or
    ``release``.
    """
    until = now + datetime.timedelta(seconds=seconds)
    for _ in range(_TRIES):
        result = retrying(_try_lease, refs, token, now, until)
        if result is not None:
            return result
    return [], []


def finish(token):
    """End a lease whose tasks ran: the ones that succeeded are gone."""
    entities.delete([_ref(token, LEASE_KIND)])


def holds(token):
    """Whether the lease still holds (in a transaction: and keeps holding)."""
    return datastore.Get([_key(token, LEASE_KIND)])[0] is not None


def _restore(key, copies):
    """End the lease of ``key``; its tasks ``copies`` (protos) go back to
    the queue, unless it holds them again (deferred anew, or retried)."""
    keys = [entities.key(pb.key) for pb in copies]
    back = [datastore.Entity.FromPb(pb) for pb, found in
            zip(copies, datastore.Get(keys)) if found is None]
    if back:
        datastore.Put(back)
    datastore.Delete(key)


def release(token, tasks, now):
    """Give back leased ``tasks`` this worker will not run after all, due
    at ``now`` as before their lease. Run it in a transaction; the lease
    ends."""
    if not holds(token):
        return
    for task in tasks:
        task.due, task.lease, task.attempts = now, None, task.attempts - 1
    _restore(_key(token, LEASE_KIND), [task.to_proto() for task in tasks])


def _copies(blobs):
    return [entity_pb2.EntityProto.FromString(bytes(blob))
            for blob in blobs or ()]


def _recover(key, now):
    holder = datastore.Get([key])[0]
    if holder is None or holder['due'] > now:
        return 0
    copies = _copies(holder.get('tasks'))
    _restore(key, copies)
    log.warning('lease %s expired: %d tasks back in the queue', key.name(),
                len(copies))
    return len(copies)


def recover(now):
    """Give back the tasks of leases that expired by ``now``; how many."""
    expired = _query(LEASE_KIND, datastore_query.make_filter('due', '<=', now),
                     keys_only=True)
    return sum(transaction(_recover, entities.key(ref), now)
               for ref in list(expired))


def retry(tasks, due):
    """Store ``tasks`` again, due at ``due`` (a try that failed, with its
    ``error``; or failed tasks queued again)."""
    for task in tasks:
        task.due = due
    enqueue(tasks)


def fail(task):
    """Store ``task`` as failed for good: out of the queue, with its
    ``error``, until it is retried or deleted."""
    task.due = None
    enqueue([task])


def queued():
    """The tasks waiting in the queue, oldest due first."""
    return [Task.from_proto(pb) for pb in _waiting()]


def leased():
    """The tasks leases hold, as leased (``due`` is the lease's end)."""
    return [Task.from_proto(pb) for holder in _query(LEASE_KIND)
            for prop in holder.raw_property if prop.name == 'tasks'
            for pb in _copies([prop.value.stringValue])]


def failed():
    """The tasks that failed for good."""
    return [Task.from_proto(pb)
            for pb in _query(KIND, datastore_query.make_filter('due', '=',
                                                               None))]


def size(limit=1000):
    """How many tasks wait or are held, counted up to ``limit``."""
    names = {ref.path.element[-1].name
             for ref in _waiting(keys_only=True, limit=limit)}
    names.update(task.name for task in leased())
    return min(len(names), limit)


def next_task():
    """``(task, held)`` of the task that falls due next: the first waiting,
    or the first of the lease that ends first (``held``; ``due`` is the
    lease's end, when its tasks may come back), whichever comes first;
    None if there is neither."""
    firsts = [(Task.from_proto(pb), False) for pb in _waiting(limit=1)]
    for holder in _query(LEASE_KIND, order='due', limit=1):
        firsts += [(Task.from_proto(pb), True) for pb in _copies(
            [prop.value.stringValue for prop in holder.raw_property
             if prop.name == 'tasks'][:1])]
    return min(firsts, key=lambda first: first[0].due, default=None)


def next_due():
    """When a task falls due next, or a lease ends whose tasks may come
    back (None if neither)."""
    first = next_task()
    return None if first is None else first[0].due
