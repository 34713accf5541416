"""The embedded default's datastore: the SDK's file stub, with key ranges.

The SDK's ``DatastoreFileStub`` answers every query of a kind by sorting
the whole kind, so a query of one range of keys costs the kind, where in
production it costs the range. A snapshot reads a kind a range at a time,
in many tasks, and so does a restore: on the plain stub that is quadratic.
This stub keeps the keys of each kind that has been queried by key in key
order and answers such a query with the entities between its bounds, in
that order, leaving the SDK's stub its batches, offsets and cursors.
Everything else is the SDK's, the file format included.
"""
import bisect
import heapq
import threading

from google.appengine.api import (datastore, datastore_file_stub,
                                  datastore_types)
from google.appengine.datastore import datastore_pb, datastore_stub_util

from . import defaults

__all__ = ['DatastoreFileStub', 'ID_MARK', 'id_marks', 'app_ids']

#: The kind (in the library's namespace) of the entities a saved file
#: keeps its id counters in (``id_marks``).
ID_MARK = 'LovelyGaeIdMark'


def id_marks(stub):
    """Entities (encoded) whose ids are the last ``stub`` allocated, one an
    id space: saved with its entities, so that the stub that reads the file
    (ours, or the SDK's: each sets its counters past the highest id it
    reads) never allocates an id twice. Without them, an id allocated to an
    entity deleted since (the newest snapshot, say) would come again, where
    the datastore never gives one twice: a file ``snapshot.605`` of
    another snapshot 605."""
    marks = []
    for space in (datastore_stub_util.SEQUENTIAL,
                  datastore_stub_util.SCATTERED):
        last = stub._IdCounter(space) - 1
        if last > 0:
            if space == datastore_stub_util.SCATTERED:
                last = datastore_stub_util.ToScatteredId(last)
            mark = datastore.Entity(ID_MARK, id=last,
                                    namespace=defaults.NAMESPACE)
            marks.append(mark.ToPb().SerializeToString())
    return marks


def app_ids(stub):
    """The app ids whose entities ``stub`` holds, sorted: served as one
    app id, a datastore finds none of another's."""
    return sorted({datastore_types.DecodeAppIdNamespace(app_ns)[0]
                   for (app_ns, _), by_key in stub._GetAllEntities().items()
                   if by_key})


_LOWER = (datastore_pb.Query.Filter.GREATER_THAN,
          datastore_pb.Query.Filter.GREATER_THAN_OR_EQUAL)
_UPPER = (datastore_pb.Query.Filter.LESS_THAN,
          datastore_pb.Query.Filter.LESS_THAN_OR_EQUAL)


def _order(k):
    """A key's place in key order, from the stub's own value of it
    (``datastore_types.ReferenceToKeyValue``: type, app, namespace, then
    kind and id or name by turns): ids before names, strings by code
    point, as the datastore orders them."""
    return tuple((k[i], 0, k[i + 1]) if isinstance(k[i + 1], int) else
                 (k[i], 1, k[i + 1]) for i in range(3, len(k), 2))


def _sort_key(value):
    """``_order`` of a filter's ``ReferenceValue``."""
    return tuple((element.type, 1, element.name) if element.HasField('name')
                 else (element.type, 0, element.id)
                 for element in value.pathelement)


def _key_bounds(query, filters, orders):
    """``(lower, upper)`` of a query of a kind by key ranges only, in key
    order, each ``(sort key, included)`` or None (open); None for any
    other query."""
    if (not query.HasField('kind') or query.HasField('ancestor')
            or query.kind.startswith('__') or query.property_name
            or query.group_by_property_name):
        return None
    if any(order.property != '__key__' or
           order.direction != datastore_pb.Query.Order.ASCENDING
           for order in orders):
        return None
    lower = upper = None
    for query_filter in filters:
        if (len(query_filter.property) != 1
                or query_filter.property[0].name != '__key__'
                or query_filter.op not in _LOWER + _UPPER):
            return None
        order = _sort_key(query_filter.property[0].value.referencevalue)
        if query_filter.op in _LOWER:
            bound = (order, query_filter.op ==
                     datastore_pb.Query.Filter.GREATER_THAN_OR_EQUAL)
            lower = bound if lower is None else max(lower, bound)
        else:
            bound = (order, query_filter.op ==
                     datastore_pb.Query.Filter.LESS_THAN_OR_EQUAL)
            upper = bound if upper is None else min(upper, bound)
    return lower, upper


class _KindKeys:
    """The keys of a kind in key order: sort keys and the stub's own."""

    def __init__(self, stored):
        pairs = sorted((_order(k), k) for k in stored)
        self.order = [order for order, _ in pairs]
        self.keys = [k for _, k in pairs]

    def add(self, k):
        order = _order(k)
        index = bisect.bisect_left(self.order, order)
        self.order.insert(index, order)
        self.keys.insert(index, k)

    def remove(self, k):
        index = bisect.bisect_left(self.order, _order(k))
        del self.order[index], self.keys[index]

    def between(self, lower, upper):
        """The stub's keys from ``lower`` to ``upper`` (see ``_key_bounds``)."""
        first, last = 0, len(self.order)
        if lower is not None:
            find = bisect.bisect_left if lower[1] else bisect.bisect_right
            first = find(self.order, lower[0])
        if upper is not None:
            find = bisect.bisect_right if upper[1] else bisect.bisect_left
            last = find(self.order, upper[0])
        return self.keys[first:last]


class DatastoreFileStub(datastore_file_stub.DatastoreFileStub):
    """``DatastoreFileStub`` that reads a range of keys in its own time."""

    def __init__(self, *args, **kwargs):
        self._kind_keys = {}
        self._kind_keys_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def Clear(self):
        with self._kind_keys_lock:
            self._kind_keys = {}
        super().Clear()

    def _StoreRecord(self, record, insert=False):
        app_kind, _, k = self._GetEntityLocation(record.entity.key)
        with self._kind_keys_lock:
            index = self._kind_keys.get(app_kind)
            if index is not None and k not in self._GetAllEntities().get(
                    app_kind, ()):
                index.add(k)
        super()._StoreRecord(record, insert)

    def _Delete(self, key):
        app_kind, _, k = self._GetEntityLocation(key)
        with self._kind_keys_lock:
            index = self._kind_keys.get(app_kind)
            if index is not None and k in self._GetAllEntities().get(
                    app_kind, ()):
                index.remove(k)
        super()._Delete(key)

    def _GetQueryCursor(self, query, filters, orders, index_list):
        if _scatter_sample(query, filters, orders):
            return self._scatter_sample(query, filters, orders, index_list)
        bounds = _key_bounds(query, filters, orders)
        if bounds is None:
            return super()._GetQueryCursor(query, filters, orders, index_list)
        app_kind = (datastore_types.EncodeAppIdNamespace(
            query.app, query.name_space), query.kind)
        # The stub's own lock first, as its writes take it before ours.
        with self._DatastoreFileStub__entities_lock, self._kind_keys_lock:
            stored = self._GetAllEntities().get(app_kind, {})
            index = self._kind_keys.get(app_kind)
            if index is None:
                index = self._kind_keys[app_kind] = _KindKeys(stored)
            results = [stored[k].record for k in index.between(*bounds)
                       if k in stored]
        return _cursor(query, filters, orders, index_list, results)

    def _scatter_sample(self, query, filters, orders, index_list):
        """The first of a kind's entities in ``__scatter__`` order, as the
        SDK's stub finds them, without sorting the whole kind."""
        app_kind = (datastore_types.EncodeAppIdNamespace(
            query.app, query.name_space), query.kind)
        with self._DatastoreFileStub__entities_lock:
            records = [entity.record for entity in
                       self._GetAllEntities().get(app_kind, {}).values()]
        scattered = []
        for record in records:
            value = datastore_stub_util._GetScatterProperty(record.entity)
            if value is not None:
                scattered.append((value.value.stringValue, record))
        wanted = heapq.nsmallest(query.offset + query.limit, scattered,
                                 key=lambda pair: pair[0])
        return _cursor(query, filters, orders, index_list,
                       [record for _, record in wanted])


def _scatter_sample(query, filters, orders):
    """Is it a sample of a kind by ``__scatter__`` with a limit, as
    ``passes`` asks for (and the SDK's ``key_range``)?"""
    return (query.HasField('kind') and not query.HasField('ancestor')
            and not filters and query.HasField('limit')
            and not query.HasField('compiled_cursor')
            and [order.property for order in orders] == ['__scatter__']
            and orders[0].direction == datastore_pb.Query.Order.ASCENDING)


def _cursor(query, filters, orders, index_list, results):
    """As ``datastore_stub_util._ExecuteQuery`` makes it, but the results
    are the query's already, in its order: no filtering, no sorting."""
    orders = datastore_stub_util._GuessOrders(filters, orders)
    datastore_stub_util.NormalizeCursors(query, orders[0].direction)
    dsquery = datastore_stub_util._MakeQuery(query, filters, orders)
    return datastore_stub_util.ListCursor(query, dsquery, orders, index_list,
                                          results)
