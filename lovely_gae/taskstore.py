"""How the task queue stores its tasks: entities read and written as protos.

``async_.Task`` is how a task looks to its users. The hot path (put a task,
find the due ones, lease them) skips ``db.Model`` and works on the
``EntityProto`` messages: most of a task's cost on the datastore is
converting its properties. Only set properties are stored; ``db.Model``
reads a missing one as its default, and so does ``leases.LeasedTask``.
"""
import datetime

from google.appengine.api import datastore_types
from google.appengine.datastore import datastore_query
from google.appengine.datastore import entity_bytes_pb2 as entity_pb2

from . import defaults, entities

__all__ = ['KIND', 'EPOCH', 'MAX_PAYLOAD', 'BATCH', 'WHEN', 'micros', 'add_property',
           'properties', 'emptied_value', 'entity_of', 'put', 'due_batches']

KIND = 'LovelyGaeTask'

#: Failed tasks, and only they, have ``due=None``; a range that starts here
#: never matches them.
EPOCH = datetime.datetime(1970, 1, 1)

#: Bytes of serialized arguments a task may have: a leased task is stored
#: again inside its lease's entity, which must stay below the datastore's
#: 1,048,572 bytes per entity too.
MAX_PAYLOAD = 1000000

#: Due tasks handed to one lease. A cross-group transaction spans at most
#: ``defaults.MAX_TRANSACTION_GROUPS`` entity groups: every task is one,
#: and the lease entity another.
BATCH = 20

#: Meaning of a datetime property: microseconds since ``EPOCH``.
WHEN = entity_pb2.Property.GD_WHEN
_MICROSECOND = datetime.timedelta(microseconds=1)
_TEXT = entity_pb2.Property.TEXT


def micros(when):
    """A naive UTC datetime as the datastore stores it."""
    return (when - EPOCH) // _MICROSECOND


def add_property(props, name, meaning=None, multiple=False):
    """The value of a new property appended to ``props``."""
    prop = props.add()
    prop.name = name
    prop.multiple = multiple
    if meaning:
        prop.meaning = meaning
    return prop.value


def properties(pb):
    """The properties of ``pb`` by name (a stored null reads as 0 or '')."""
    props = {prop.name: prop for prop in pb.property}
    props.update((prop.name, prop) for prop in pb.raw_property)
    return props


def emptied_value(props, pb, name):
    """The emptied value of property ``name``; added, unindexed, if missing.

    ``props`` is ``properties(pb)``.
    """
    prop = props.get(name)
    if prop is None:
        return add_property(pb.raw_property, name)
    prop.value.Clear()
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
        add_property(pb.property, 'due', WHEN).int64Value = micros(task.due)
    raw = pb.raw_property
    add_property(raw, 'func').stringValue = task.func.encode('utf-8')
    if task.payload is not None:
        add_property(raw, 'payload', _TEXT).stringValue = (
            task.payload.encode('utf-8'))
    if task.on_failure:
        add_property(raw, 'on_failure').stringValue = (
            task.on_failure.encode('utf-8'))
    add_property(raw, 'max_attempts').int64Value = task.max_attempts
    add_property(raw, 'retry_delay').doubleValue = task.retry_delay
    add_property(raw, 'created', WHEN).int64Value = micros(task.created)
    return pb


def put(protos):
    """Store task entities; inside a transaction, they commit with it."""
    entities.put(protos)


def due_batches(cutoff):
    """References of the tasks due by ``cutoff``, in lists of ``BATCH``."""
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
            if len(batch) >= BATCH:
                yield batch
                batch = []
    if batch:
        yield batch
