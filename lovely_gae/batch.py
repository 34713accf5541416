"""Range markers: split a kind into ranges of about ``batchsize`` entities.

The markers of a kind are the keys of its ``batchsize``-th, ``2*batchsize``-th,
... entity in key order. ``n`` markers cut the key space into ``n + 1``
ranges: ``[None, m1), [m1, m2), ..., [mn, None)``, so the ranges together
cover every key, also keys written after the markers were taken.
"""
import uuid

from . import async_, entities

__all__ = ['compute_markers', 'create_markers', 'ranges']

#: Keys handed to a ``keys_sink`` at a time.
_SINK_BATCH = 5000


def compute_markers(kind, batchsize, namespace='', ranges_seen=None):
    """The markers of ``kind`` in ``namespace``, as ``db.Key`` objects.

    ``ranges_seen(position, references)`` is told the serialized keys of
    each range, in order, as the scan passes them.
    """
    markers = []
    keys = []
    for index, reference in enumerate(
            entities.iter_range_keys(kind, namespace)):
        if index and index % batchsize == 0:
            markers.append(entities.key(reference))
            if ranges_seen:
                ranges_seen(len(markers) - 1, keys)
                keys = []
        if ranges_seen:
            keys.append(reference.SerializeToString())
    if ranges_seen:
        ranges_seen(len(markers), keys)
    return markers


def ranges(markers):
    """``[(start, end), ...]`` for markers; None is an open end."""
    bounds = [None] + list(markers) + [None]
    return list(zip(bounds[:-1], bounds[1:]))


def create_markers(kind, batchsize, callback, callback_args=(),
                   namespace='', on_failure=None, on_failure_args=(),
                   keys_sink=None, keys_sink_args=()):
    """Queue a task that computes the markers of ``kind``.

    When they are known, that task queues ``callback(*callback_args,
    markers)`` as a task of its own. ``on_failure`` (see ``async_.defer``)
    goes to both tasks. With ``keys_sink``, the task also hands over the
    keys of every range, from the same scan: it calls ``keys_sink(
    *keys_sink_args, token, [(position, [serialized key, ...]), ...])`` in
    batches, and the callback gets ``token`` after ``markers``, so that a
    retried scan's lists never mix with the first one's.
    """
    names = [async_.dotted_name(f) if f else None
             for f in (callback, on_failure, keys_sink)]
    return async_.defer(
        _markers_task,
        args=(kind, batchsize, names[0], list(callback_args), namespace,
              names[1], list(on_failure_args), names[2],
              list(keys_sink_args)),
        on_failure=on_failure, on_failure_args=on_failure_args)


def _markers_task(kind, batchsize, callback, callback_args, namespace,
                  on_failure, on_failure_args, keys_sink=None,
                  keys_sink_args=()):
    token = None
    if keys_sink:
        token = uuid.uuid4().hex[:12]
        sink = async_.resolve(keys_sink)
        pending = []

        def ranges_seen(position, keys):
            pending.append((position, keys))
            if sum(len(k) for _, k in pending) >= _SINK_BATCH:
                sink(*keys_sink_args, token, pending)
                pending.clear()
        markers = compute_markers(kind, batchsize, namespace, ranges_seen)
        sink(*keys_sink_args, token, pending)
    else:
        markers = compute_markers(kind, batchsize, namespace)
    args = list(callback_args) + [markers] + ([token] if token else [])
    async_.defer(callback, args=args, on_failure=on_failure,
                 on_failure_args=on_failure_args)
