"""Key-range queries on the SDK's stub in the range's time, same answers.

The stub answers a query by evaluating its filters on every entity of the
kind, one ``eval`` per entity, and sorting what is left: 0.5 s for a
200-entity key-range query at 20,000 entities, seconds at 200,000. In the
simulated runs the stub's CPU is not on any clock, but it is on the
machine's: a restore makes a key-range query per range.

``fast_key_ranges`` narrows the entities a query with only ``__key__``
filters starts from, with the comparisons the stub itself makes (Python's,
on the same key tuples: ``PropertyFilter._apply_to_value``), and hands the
rest to the stub's own ``_ExecuteQuery``; any other query, or keys that do
not compare, go the stub's way. What a query returns is unchanged:
``tests/test_benchmarks.py`` compares both on random ranges.
"""
import contextlib
import operator

from google.appengine.api import datastore_types
from google.appengine.datastore import datastore_pb, datastore_stub_util

__all__ = ['fast_key_ranges']

_Filter = datastore_pb.Query.Filter
_OPERATORS = {_Filter.LESS_THAN: operator.lt,
              _Filter.LESS_THAN_OR_EQUAL: operator.le,
              _Filter.GREATER_THAN: operator.gt,
              _Filter.GREATER_THAN_OR_EQUAL: operator.ge,
              _Filter.EQUAL: operator.eq}
_KEY = datastore_types.KEY_SPECIAL_PROPERTY


def _bounds(query, filters, pseudo_kinds):
    """``[(operator, key value)]`` of a query on ``__key__`` alone, or None."""
    if (not filters or not query.HasField('kind') or query.property_name
            or query.kind in pseudo_kinds):
        return None
    bounds = []
    for one in filters:
        if (one.op not in _OPERATORS or len(one.property) != 1
                or one.property[0].name != _KEY):
            return None
        bounds.append((_OPERATORS[one.op],
                       datastore_types.PropertyValueToKeyValue(
                           one.property[0].value)))
    return bounds


@contextlib.contextmanager
def fast_key_ranges(stub):
    """While inside, ``stub`` (a ``DatastoreFileStub``) answers key-range
    queries from the entities in the range."""
    original = stub._GetQueryCursor
    by_kind = stub._DatastoreFileStub__entities_by_kind
    lock = stub._DatastoreFileStub__entities_lock

    def cursor(query, filters, orders, index_list):
        bounds = _bounds(query, filters, stub._pseudo_kinds)
        if bounds is None:
            return original(query, filters, orders, index_list)
        app_ns = datastore_types.EncodeAppIdNamespace(query.app,
                                                      query.name_space)
        with lock:
            stored = by_kind.get((app_ns, query.kind), {})
            try:
                results = [entity.record for key, entity in stored.items()
                           if all(test(key, value)
                                  for test, value in bounds)]
            except TypeError:  # keys that do not compare: the stub's way
                results = None
        if results is None:
            return original(query, filters, orders, index_list)
        return datastore_stub_util._ExecuteQuery(results, query, filters,
                                                 orders, index_list)

    before = vars(stub).get('_GetQueryCursor')
    stub._GetQueryCursor = cursor
    try:
        yield stub
    finally:
        if before is None:
            del stub._GetQueryCursor
        else:
            stub._GetQueryCursor = before
