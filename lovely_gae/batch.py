"""Range markers: split a kind into ranges of about ``batchsize`` entities.

The markers of a kind are the keys of its ``batchsize``-th, ``2*batchsize``-th,
... entity in key order. ``n`` markers cut the key space into ``n + 1``
ranges: ``[None, m1), [m1, m2), ..., [mn, None)``, so the ranges together
cover every key, also keys written after the markers were taken.
"""
from . import async_, entities

__all__ = ['compute_markers', 'create_markers', 'ranges']


def compute_markers(kind, batchsize, namespace=''):
    """The markers of ``kind`` in ``namespace``, as ``db.Key`` objects."""
    markers = []
    for index, reference in enumerate(
            entities.iter_range_keys(kind, namespace)):
        if index and index % batchsize == 0:
            markers.append(entities.key(reference))
    return markers


def ranges(markers):
    """``[(start, end), ...]`` for markers; None is an open end."""
    bounds = [None] + list(markers) + [None]
    return list(zip(bounds[:-1], bounds[1:]))


def create_markers(kind, batchsize, callback, callback_args=(),
                   namespace='', on_failure=None, on_failure_args=()):
    """Queue a task that computes the markers of ``kind``.

    When they are known, that task queues ``callback(*callback_args,
    markers)`` as a task of its own. ``on_failure`` (see ``async_.defer``)
    goes to both tasks.
    """
    on_failure = async_.dotted_name(on_failure) if on_failure else None
    return async_.defer(
        _markers_task,
        args=(kind, batchsize, async_.dotted_name(callback),
              list(callback_args), namespace, on_failure,
              list(on_failure_args)),
        on_failure=on_failure, on_failure_args=on_failure_args)


def _markers_task(kind, batchsize, callback, callback_args, namespace,
                  on_failure, on_failure_args):
    markers = compute_markers(kind, batchsize, namespace)
    async_.defer(callback, args=list(callback_args) + [markers],
                 on_failure=on_failure, on_failure_args=on_failure_args)
