"""Range markers: split a kind into ranges of about ``batchsize`` entities.

The markers of a kind are the keys of its ``batchsize``-th, ``2*batchsize``-th,
... entity in key order. ``n`` markers cut the key space into ``n + 1``
ranges: ``[None, m1), [m1, m2), ..., [mn, None)``, so the ranges together
cover every key, also keys written after the markers were taken.

The pass that finds the markers can also hand each range on as it goes:
its entities themselves (``range_sink``), for as long as a time budget
lasts, and after that only their keys (``keys_sink``), so that one task's
work stays bounded and the remaining ranges are read by tasks of their own.
"""
import time
import uuid

from google.appengine.ext import db

from . import async_, defaults, entities
from .base import LibraryModel, retrying
from .serializers import default_serializer

__all__ = ['MarkerList', 'compute_markers', 'create_markers', 'iter_ranges',
           'ranges']

#: Keys handed to a ``keys_sink`` at a time.
_SINK_BATCH = 5000
#: Markers passed in the callback's task arguments at most (a task is an
#: entity, and an entity holds 1 MiB); more go through a ``MarkerList``.
_INLINE_MARKERS = 2000


class MarkerList(LibraryModel):
    """Markers kept in the datastore, ``CHUNK`` an entity, under a prefix."""

    CHUNK = 5000

    markers = db.TextProperty()

    @classmethod
    def keys(cls, prefix, count):
        """Keys of the entities that hold ``count`` markers."""
        return [cls.key_for('%s%04d' % (prefix, index))
                for index in range(max(1, -(-count // cls.CHUNK)))]

    @classmethod
    def build(cls, prefix, markers):
        markers = list(markers)
        return [cls(key=key, markers=db.Text(default_serializer.dumps(
            markers[index * cls.CHUNK:(index + 1) * cls.CHUNK])))
            for index, key in enumerate(cls.keys(prefix, len(markers)))]

    @classmethod
    def load(cls, prefix, count):
        """The ``count`` markers as ``db.Key`` objects; None if any is gone."""
        found = db.get(cls.keys(prefix, count))
        if any(entity is None for entity in found):
            return None
        return [marker for entity in found
                for marker in default_serializer.loads(entity.markers)]


def iter_ranges(kind, batchsize, namespace='', full_seconds=0.0):
    """Yield ``(position, start, full, items)`` per range, from one pass.

    ``start`` is the range's first key (``db.Key``; None for the first
    range), so the starts after the first are the markers. ``items``
    iterates over the range's entities (``EntityProto``) when ``full``,
    else over its keys (``Reference``); what the caller leaves of it is
    skipped. The pass reads whole entities until ``full_seconds`` have
    passed, then keys only, switching where a range starts.
    """
    full = full_seconds > 0
    stop_at = time.monotonic() + full_seconds
    state = {'source': iter(entities.iter_range(
        kind, namespace, keys_only=not full,
        max_batch_bytes=defaults.PART_SIZE // 2))}
    state['next'] = next(state['source'], None)

    def items():
        for _ in range(batchsize):
            item = state['next']
            if item is None:
                return
            state['next'] = next(state['source'], None)
            yield item
    position, start = 0, None
    while True:
        current = items()
        yield position, start, full, current
        for _ in current:
            pass
        if state['next'] is None:
            return
        position += 1
        start = entities.key(state['next'].key if full else state['next'])
        if full and time.monotonic() >= stop_at:
            full = False  # the rest by keys, from this range's first key on
            state['source'] = iter(entities.iter_range_keys(
                kind, namespace, start))
            state['next'] = next(state['source'], None)


def compute_markers(kind, batchsize, namespace=''):
    """The markers of ``kind`` in ``namespace``, as ``db.Key`` objects."""
    return [start for position, start, _, _ in
            iter_ranges(kind, batchsize, namespace) if position]


def ranges(markers):
    """``[(start, end), ...]`` for markers; None is an open end."""
    bounds = [None] + list(markers) + [None]
    return list(zip(bounds[:-1], bounds[1:]))


def create_markers(kind, batchsize, callback, callback_args=(),
                   namespace='', on_failure=None, on_failure_args=(),
                   keys_sink=None, keys_sink_args=(), range_sink=None,
                   range_sink_args=(), full_seconds=0.0):
    """Queue a task that computes the markers of ``kind``.

    When they are known, that task queues ``callback(*callback_args,
    markers)`` as a task of its own. ``on_failure`` (see ``async_.defer``)
    goes to both tasks.

    The same pass can hand over what it reads, tagged with a ``token`` of
    its own, so that a retried pass never mixes with the first one; the
    callback then gets ``token`` after ``markers``:

    - ``range_sink(*range_sink_args, token, position, start, entities)``
      is called for each range read while ``full_seconds`` last, with an
      iterator over the range's ``EntityProto`` messages;
    - ``keys_sink(*keys_sink_args, token, [(position, [serialized key,
      ...]), ...])`` gets the keys of every other range, in batches.
    """
    names = [async_.dotted_name(f) if f else None
             for f in (callback, on_failure, keys_sink, range_sink)]
    args = [kind, batchsize, names[0], list(callback_args), namespace,
            names[1], list(on_failure_args), names[2], list(keys_sink_args)]
    if range_sink:  # older workers know the first nine arguments only
        args += [names[3], list(range_sink_args), full_seconds]
    return async_.defer(_markers_task, args=args, on_failure=on_failure,
                        on_failure_args=on_failure_args)


def _markers_task(kind, batchsize, callback, callback_args, namespace,
                  on_failure, on_failure_args, keys_sink=None,
                  keys_sink_args=(), range_sink=None, range_sink_args=(),
                  full_seconds=0.0):
    token = uuid.uuid4().hex[:12] if keys_sink or range_sink else None
    to_keys = async_.resolve(keys_sink) if keys_sink else None
    to_store = async_.resolve(range_sink) if range_sink else None
    markers, pending, waiting = [], [], 0
    for position, start, full, items in iter_ranges(
            kind, batchsize, namespace, full_seconds if to_store else 0):
        if position:
            markers.append(start)
        if full:
            to_store(*range_sink_args, token, position, start, items)
        elif to_keys:
            pending.append((position, [r.SerializeToString() for r in items]))
            waiting += len(pending[-1][1])
            if waiting >= _SINK_BATCH:
                to_keys(*keys_sink_args, token, pending)
                pending, waiting = [], 0
    if pending:
        to_keys(*keys_sink_args, token, pending)
    if len(markers) > _INLINE_MARKERS:
        prefix = 'ML:%s:' % (token or uuid.uuid4().hex[:12])
        retrying(db.put, MarkerList.build(prefix, markers))
        async_.defer(_deliver, args=(callback, list(callback_args), prefix,
                                     len(markers), token),
                     on_failure=on_failure, on_failure_args=on_failure_args)
        return
    args = list(callback_args) + [markers] + ([token] if token else [])
    async_.defer(callback, args=args, on_failure=on_failure,
                 on_failure_args=on_failure_args)


def _deliver(callback, callback_args, prefix, count, token):
    """The callback's task when its markers are in a ``MarkerList``."""
    markers = MarkerList.load(prefix, count)
    if markers is None:
        return  # delivered: a list goes only after its callback has run
    async_.resolve(callback)(*callback_args, markers,
                             *([token] if token else []))
    retrying(db.delete, MarkerList.keys(prefix, count))
