"""The embedded default's datastore: the SDK's file stub, with key ranges.

The SDK's ``DatastoreFileStub`` answers every query of a kind by sorting
the whole kind, so a query of one range of keys costs the kind, where in
production it costs the range. A snapshot reads a kind a range at a time,
in many tasks, and so does a restore: on the plain stub that is quadratic.
This stub keeps the keys of each kind that has been queried by key in key
order and hands such a query just the entities between its bounds; the SDK
then runs the query on those as it would on all. Everything else is the
SDK's, the file format included.
"""
import bisect
import threading

from google.appengine.api import datastore_file_stub, datastore_types
from google.appengine.datastore import datastore_pb, datastore_stub_util

from . import entities

__all__ = ['DatastoreFileStub']

_LOWER = (datastore_pb.Query.Filter.GREATER_THAN,
          datastore_pb.Query.Filter.GREATER_THAN_OR_EQUAL)
_UPPER = (datastore_pb.Query.Filter.LESS_THAN,
          datastore_pb.Query.Filter.LESS_THAN_OR_EQUAL)


def _sort_key(value):
    """``entities.sort_key`` of a filter's ``ReferenceValue``."""
    return tuple(
        (element.type.encode('utf-8'), 1, element.name.encode('utf-8'))
        if element.HasField('name') else
        (element.type.encode('utf-8'), 0, element.id)
        for element in value.pathelement)


def _key_bounds(query, filters, orders):
    """``(lower, upper)`` sort keys (None: open) of a query of a kind by
    key ranges only, in key order; None for any other query."""
    if (not query.HasField('kind') or query.HasField('ancestor')
            or query.kind.startswith('__')):
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
        bound = _sort_key(query_filter.property[0].value.referencevalue)
        if query_filter.op in _LOWER:
            lower = bound if lower is None else max(lower, bound)
        else:
            upper = bound if upper is None else min(upper, bound)
    return lower, upper


class _KindKeys:
    """The keys of a kind in key order: sort keys and the stub's own."""

    def __init__(self, stored):
        pairs = sorted((entities.sort_key(entity.record.entity.key), k)
                       for k, entity in stored.items())
        self.order = [order for order, _ in pairs]
        self.keys = [k for _, k in pairs]

    def add(self, reference, k):
        order = entities.sort_key(reference)
        index = bisect.bisect_left(self.order, order)
        self.order.insert(index, order)
        self.keys.insert(index, k)

    def remove(self, reference):
        index = bisect.bisect_left(self.order, entities.sort_key(reference))
        del self.order[index], self.keys[index]

    def between(self, lower, upper):
        """The stub's keys from ``lower`` to ``upper``, both included."""
        first = 0 if lower is None else bisect.bisect_left(self.order, lower)
        last = (len(self.order) if upper is None
                else bisect.bisect_right(self.order, upper))
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
                index.add(record.entity.key, k)
        super()._StoreRecord(record, insert)

    def _Delete(self, key):
        app_kind, _, k = self._GetEntityLocation(key)
        with self._kind_keys_lock:
            index = self._kind_keys.get(app_kind)
            if index is not None and k in self._GetAllEntities().get(
                    app_kind, ()):
                index.remove(key)
        super()._Delete(key)

    def _GetQueryCursor(self, query, filters, orders, index_list):
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
        return datastore_stub_util._ExecuteQuery(results, query, filters,
                                                 orders, index_list)
