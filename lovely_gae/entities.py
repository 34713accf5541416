"""Entities as the datastore holds them: encoded ``EntityProto`` messages.

A snapshot must put back exactly the bytes it read, so it never goes through
``db.Model`` or ``datastore.Entity``: reads and writes here use a connection
whose adapter hands over the protocol buffers untouched.
"""
from google.appengine.api import datastore, datastore_types
from google.appengine.datastore import (
    datastore_pb,
    datastore_query,
    datastore_rpc,
)
from google.appengine.datastore import entity_bytes_pb2 as entity_pb2
from google.appengine.ext import db

from . import defaults
from .base import TRANSIENT_ERRORS, WIDE, retrying

__all__ = ['EntityProto', 'connection', 'iter_range', 'send_range',
           'read_range', 'first_batch', 'iter_range_keys', 'put',
           'put_encoded', 'SentPut', 'delete', 'SentDelete', 'get', 'kinds',
           'namespaces', 'ref', 'key', 'sort_key']

EntityProto = entity_pb2.EntityProto


def connection():
    """A datastore connection that neither decodes nor encodes entities,
    and cuts its calls as ``base.WIDE`` does."""
    return datastore_rpc.Connection(
        adapter=datastore_rpc.IdentityAdapter(), config=WIDE)


def ref(key):
    """The ``Reference`` protocol buffer of a ``db.Key``."""
    return key._ToPb()


def key(reference):
    """The ``db.Key`` of a ``Reference`` protocol buffer."""
    return db.Key._FromPb(reference)


def sort_key(reference):
    """A value that orders ``Reference`` messages as the datastore does.

    Path element by element: kind (UTF-8 bytes), then numeric ids before
    names (UTF-8 bytes); a path sorts before the paths it is a prefix of.
    """
    return tuple(
        (element.type.encode('utf-8'), 1, element.name.encode('utf-8'))
        if element.HasField('name') else
        (element.type.encode('utf-8'), 0, element.id)
        for element in reference.path.element)


#: Bytes an entity is taken to have before a query has seen any: what the
#: first batch of a query whose batches must fit in bytes asks for by.
_GUESSED_SIZE = 2048


def _range_query(kind, namespace, start, end):
    filters = []
    if start is not None:
        filters.append(datastore_query.make_filter('__key__', '>=', start))
    if end is not None:
        filters.append(datastore_query.make_filter('__key__', '<', end))
    if len(filters) > 1:
        predicate = datastore_query.CompositeFilter(
            datastore_query.CompositeFilter.AND, filters)
    else:
        predicate = filters[0] if filters else None
    return datastore_query.Query(
        app=datastore_types.ResolveAppId(None), namespace=namespace,
        kind=kind, filter_predicate=predicate,
        order=datastore_query.PropertyOrder('__key__'))


def iter_range(kind, namespace, start=None, end=None, keys_only=False,
               batch_size=None, max_batch_bytes=None):
    """Yield the entities of ``kind`` with ``start <= key < end``, in key order.

    The query runs to its end batch by batch, however many entities there
    are. ``start`` and ``end`` are ``db.Key`` or None for an open end. With
    ``keys_only`` it yields ``Reference`` messages. With ``max_batch_bytes``
    each batch asks for as many entities as fit, by the mean size so far,
    the first taking each to be ``_GUESSED_SIZE`` bytes.
    """
    return read_range(send_range(kind, namespace, start, end, keys_only,
                                 batch_size, max_batch_bytes))


def first_batch(max_batch_bytes):
    """Entities the first batch of a query asks for, its batches bounded
    to ``max_batch_bytes``."""
    return max(1, min(defaults.QUERY_BATCH, max_batch_bytes // _GUESSED_SIZE))


class SentRange:
    """The first query of a range, on its way (``send_range``); once read,
    ``mean_bytes`` is the mean size of its entities as far as sampled."""

    def __init__(self, query, keys_only, batch_size, max_batch_bytes):
        self.most = batch_size or defaults.QUERY_BATCH
        self.max_batch_bytes = max_batch_bytes
        self.size = (min(self.most, first_batch(max_batch_bytes))
                     if max_batch_bytes else self.most)
        self.mean_bytes = None
        self.future = query.run_async(
            connection(), datastore_query.QueryOptions(
                keys_only=keys_only, batch_size=self.size))


def send_range(kind, namespace, start=None, end=None, keys_only=False,
               batch_size=None, max_batch_bytes=None):
    """Send the first query of ``iter_range`` and return at once, so that
    the queries of several ranges are on their way together; ``read_range``
    reads on."""
    return SentRange(_range_query(kind, namespace, start, end), keys_only,
                     batch_size, max_batch_bytes)


def read_range(sent):
    """Yield what the query ``send_range`` sent finds, batch by batch."""
    batch, size = sent.future.get_result(), sent.size
    while batch is not None:
        results = batch.results
        yield from results  # Reference messages when keys_only
        if sent.max_batch_bytes and results:  # a mean of 32 or so is enough
            sample = results[::max(1, len(results) // 32)]
            sent.mean_bytes = sum(e.ByteSize() for e in sample) / len(sample)
            size = max(1, min(sent.most,
                              int(sent.max_batch_bytes // sent.mean_bytes)))
        batch = batch.next_batch(datastore_query.FetchOptions(
            batch_size=size))


def iter_range_keys(kind, namespace, start=None, batch_size=None):
    return iter_range(kind, namespace, start, None, keys_only=True,
                      batch_size=batch_size)


def put(entities):
    """Put ``EntityProto`` messages as they are, in requests under the limits.

    Inside a transaction they commit with it, through the transaction's
    own connection (which takes ``datastore.Entity``).
    """
    if not entities:
        return
    if datastore.IsInTransaction():
        datastore.Put([datastore.Entity.FromPb(pb) for pb in entities])
        return
    retrying(connection().put, list(entities))


def put_encoded(records):
    """Put encoded ``EntityProto`` messages (bytes) in one request.

    Each record is decoded straight into the request: no message per
    entity for the connection to copy and to measure. The caller keeps the
    request within the limits (``defaults.MAX_REQUEST_ENTITIES``,
    ``defaults.MAX_REQUEST_BYTES``).
    """
    if records:
        retrying(_call, 'Put', _put_request(records),
                 datastore_pb.PutResponse)


def _put_request(records):
    request = datastore_pb.PutRequest()
    add = request.entity.add
    for record in records:
        add().MergeFromString(record)
    return request


class _SentWrite:
    """A call on its way: ``wait`` for its answer (and send ``items`` again
    with ``again``, as ``retrying`` would, if it failed for a transient
    reason)."""

    def __init__(self, rpc, again, items):
        self.rpc, self._again, self._items = rpc, again, items

    def wait(self):
        try:
            return self.rpc.get_result()
        except TRANSIENT_ERRORS:
            return self._again(self._items)


class SentPut(_SentWrite):
    """A ``put_encoded`` on its way."""

    def __init__(self, records):
        conn = connection()
        super().__init__(conn.make_rpc_call(
            None, 'Put', _put_request(records), datastore_pb.PutResponse(),
            get_result_hook=conn.check_rpc_success), put_encoded, records)


class SentDelete(_SentWrite):
    """A ``delete`` on its way."""

    def __init__(self, references):
        references = list(references)
        super().__init__(connection().async_delete(None, references), delete,
                         references)


class SentGet(_SentWrite):
    """A ``get`` on its way: ``wait`` answers it (None where there is
    none)."""

    def __init__(self, references):
        references = list(references)
        super().__init__(connection().async_get(None, references), get,
                         references)


def _call(method, request, response_type):
    """One datastore call, its errors translated as the connection's are."""
    conn, response = connection(), response_type()
    conn.check_rpc_success(conn.make_rpc_call(None, method, request,
                                              response))
    return response


def delete(references):
    """Delete the entities of ``references``; inside a transaction, with it."""
    if not references:
        return
    if datastore.IsInTransaction():
        datastore.Delete([key(reference) for reference in references])
        return
    retrying(connection().delete, list(references))


def get(references):
    """The entities for ``references`` (None where there is none)."""
    return retrying(connection().get, list(references)) if references else []


def kinds(namespace):
    """Names of all kinds in ``namespace``, sorted, metadata kinds excluded."""
    query = datastore.Query('__kind__', keys_only=True, namespace=namespace)
    names = (k.name() for k in query.Run())
    return sorted(n for n in names if not (n.startswith('__')
                                           and n.endswith('__')))


def namespaces(limit):
    """The first ``limit`` namespaces that hold entities, in order ('' is
    the default one)."""
    query = datastore.Query('__namespace__', keys_only=True)
    return [key.name() or '' for key in query.Run(limit=limit)]
