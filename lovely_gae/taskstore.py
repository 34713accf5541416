"""How the task queue stores its tasks: entities read and written as protos.

``async_.Task`` is how a task looks to its users. A worker's hot path (put a
task, find the due ones, lease a batch, delete what ran) skips ``db.Model``
and works on the ``EntityProto`` messages: most of a task's cost on the
datastore is converting its properties, and a queue touches every task
three times. Only set properties are stored; ``db.Model`` reads a missing
one as its default, and so does ``LeasedTask``.
"""
import datetime
import logging

from google.appengine.api import datastore, datastore_types
from google.appengine.datastore import datastore_query, datastore_rpc
from google.appengine.datastore import entity_bytes_pb2 as entity_pb2

from . import defaults, entities
from .base import retrying, utcnow

__all__ = ['KIND', 'EPOCH', 'LEASE_BATCH', 'LeasedTask', 'entity_of', 'put',
           'due_batches', 'lease', 'delete']

log = logging.getLogger(__name__)

KIND = 'LovelyGaeTask'

#: Failed tasks, and only they, have ``due=None``; a range that starts here
#: never matches them.
EPOCH = datetime.datetime(1970, 1, 1)

#: Tasks leased in one transaction; a cross-group transaction spans at most
#: 25 entity groups, and every task is one.
LEASE_BATCH = 20

#: Tries of a lease whose commit collides with another worker's.
_LEASE_TRIES = 20

_MICROSECOND = datetime.timedelta(microseconds=1)
_WHEN = entity_pb2.Property.GD_WHEN
_TEXT = entity_pb2.Property.TEXT
_XG = datastore_rpc.TransactionOptions(xg=True)


def _micros(when):
    return (when - EPOCH) // _MICROSECOND


def _add(props, name, meaning=None):
    prop = props.add()
    prop.name = name
    prop.multiple = False
    if meaning:
        prop.meaning = meaning
    return prop.value


def entity_of(task):
    """The ``EntityProto`` of an unsaved ``async_.Task``, as ``put`` stores it.

    The properties are ``db.Model``'s, but ``status``, ``attempts`` and
    unset ones are left out while they hold their defaults.
    """
    pb = entity_pb2.EntityProto()
    pb.key.CopyFrom(entities.ref(task.key()))
    pb.entity_group.element.add().CopyFrom(pb.key.path.element[0])
    if task.due is not None:
        _add(pb.property, 'due', _WHEN).int64Value = _micros(task.due)
    raw = pb.raw_property
    _add(raw, 'func').stringValue = task.func.encode('utf-8')
    if task.payload is not None:
        _add(raw, 'payload', _TEXT).stringValue = task.payload.encode('utf-8')
    if task.on_failure:
        _add(raw, 'on_failure').stringValue = task.on_failure.encode('utf-8')
    _add(raw, 'max_attempts').int64Value = task.max_attempts
    _add(raw, 'retry_delay').doubleValue = task.retry_delay
    _add(raw, 'created', _WHEN).int64Value = _micros(task.created)
    return pb


def put(protos):
    """Store task entities; inside a transaction, they commit with it."""
    if not datastore.IsInTransaction():
        return entities.put(protos)
    # The caller's transaction has a connection that takes datastore.Entity.
    datastore.Put([datastore.Entity.FromPb(pb) for pb in protos])


def due_batches(cutoff):
    """References of the tasks due by ``cutoff``, in lists of one lease."""
    query = datastore_query.Query(
        app=datastore_types.ResolveAppId(None), namespace=defaults.NAMESPACE,
        kind=KIND, order=datastore_query.PropertyOrder('due'),
        filter_predicate=datastore_query.CompositeFilter(
            datastore_query.CompositeFilter.AND, [
                datastore_query.make_filter('due', '>=', EPOCH),
                datastore_query.make_filter('due', '<=', cutoff)]))
    options = datastore_query.QueryOptions(keys_only=True,
                                           batch_size=defaults.TASK_BATCH)
    batch = []
    for results in query.run(entities.connection(), options):
        for reference in results.results:
            batch.append(reference)
            if len(batch) >= LEASE_BATCH:
                yield batch
                batch = []
    if batch:
        yield batch


class LeasedTask:
    """A task this worker leased: what running it needs, read from its proto."""

    __slots__ = ('ref', 'func', 'payload', 'attempts', 'max_attempts',
                 'lease')

    def __init__(self, ref, props, attempts, token):
        self.ref = ref
        self.func = props['func'].value.stringValue.decode('utf-8')
        payload = props.get('payload')
        self.payload = (payload.value.stringValue.decode('utf-8')
                        if payload is not None else None)
        max_attempts = props.get('max_attempts')
        self.max_attempts = (max_attempts.value.int64Value
                             if max_attempts is not None else None)
        self.attempts = attempts
        self.lease = token

    def key(self):
        return entities.key(self.ref)

    def __repr__(self):
        return '<LeasedTask %s attempts=%s>' % (self.func, self.attempts)


def _properties(pb):
    """The properties of ``pb`` by name (a stored null reads as 0 or '')."""
    props = {prop.name: prop for prop in pb.property}
    props.update((prop.name, prop) for prop in pb.raw_property)
    return props


def _value(props, pb, name):
    """The emptied value of property ``name``; added, unindexed, if missing."""
    prop = props.get(name)
    if prop is None:
        return _add(pb.raw_property, name)
    prop.value.Clear()
    return prop.value


def _lease_one(pb, ref, token, now, until):
    """Lease the task of ``pb`` (changed in place) if it is due; else None."""
    props = _properties(pb)
    status = props.get('status')
    due = props.get('due')
    if (due is None or not due.value.HasField('int64Value')
            or due.value.int64Value > now or status is not None
            and status.value.stringValue not in (b'queued', b'')):
        return None
    attempts = props['attempts'].value.int64Value + 1 \
        if 'attempts' in props else 1
    leased = LeasedTask(ref, props, attempts, token)
    due.value.int64Value = until
    _value(props, pb, 'lease').stringValue = token.encode('ascii')
    _value(props, pb, 'attempts').int64Value = attempts
    return leased


def _try_lease(refs, token, seconds):
    """One lease transaction: the leased tasks, or None if it collided."""
    now = _micros(utcnow())
    until = now + int(seconds * 1e6)
    txn = entities.connection().new_transaction(_XG)
    try:
        protos, leased = [], []
        for ref, pb in zip(refs, txn.get(refs)):
            task = pb is not None and _lease_one(pb, ref, token, now, until)
            if task:
                protos.append(pb)
                leased.append(task)
        if protos:
            txn.put(protos)
    except Exception:
        _rollback(txn)
        raise
    # As db.run_in_transaction: False is a collision; None, nothing to write.
    return None if txn.commit() is False else leased


def _rollback(txn):
    try:
        txn.rollback()
    except Exception:
        log.warning('rollback of a lease failed', exc_info=True)


def lease(refs, token, seconds):
    """Lease the tasks of ``refs`` that are still due, in one transaction.

    Returns their ``LeasedTask``s: [] if other workers leased them first.
    Until ``seconds`` have passed, no other worker leases them again.
    """
    for _ in range(_LEASE_TRIES):
        leased = retrying(_try_lease, refs, token, seconds)
        if leased is not None:
            return leased
    return []


def delete(refs):
    entities.delete(refs)
