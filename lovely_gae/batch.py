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
import collections
import itertools
import time
import uuid

from google.appengine.ext import db

from . import async_, defaults, entities
from .base import LibraryModel, delete_all, get_all, put_all
from .serializers import default_serializer

__all__ = ['MarkerList', 'compute_markers', 'create_markers', 'iter_ranges',
           'ranges', 'scope_lists', 'pass_lists']

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
        found = get_all(cls.keys(prefix, count))
        if any(entity is None for entity in found):
            return None
        return [marker for entity in found
                for marker in default_serializer.loads(entity.markers)]


def iter_ranges(kind, batchsize, namespace='', full_seconds=0.0,
                position=0, start=None):
    """Yield ``(position, start, full, items)`` per range, from one pass.

    ``start`` is the range's first key (``db.Key``; None for the first
    range), so the starts after the first are the markers. ``items``
    iterates over the range's entities (``EntityProto``) when ``full``,
    else over its keys (``Reference``); what the caller leaves of it is
    skipped. The pass reads whole entities until ``full_seconds`` have
    passed, then keys only, switching where a range starts. It may begin
    at range ``position``, whose first key is ``start``.
    """
    full = full_seconds > 0
    stop_at = time.monotonic() + full_seconds
    source = iter(entities.iter_range(
        kind, namespace, start, keys_only=not full,
        max_batch_bytes=defaults.PART_SIZE // 2 if full else None))
    first = next(source, None)
    while True:
        current = itertools.chain(() if first is None else (first,),
                                  itertools.islice(source, batchsize - 1))
        yield position, start, full, current
        collections.deque(current, maxlen=0)  # what the caller left
        first = next(source, None)
        if first is None:
            return
        position += 1
        start = entities.key(first.key if full else first)
        if full and time.monotonic() >= stop_at:
            full = False  # the rest by keys, from this range's first key on
            source = iter(entities.iter_range_keys(kind, namespace, start))
            first = next(source, None)


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
                   range_sink_args=(), full_seconds=0.0, scope=None):
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

    A pass that goes on in further tasks keeps its markers meanwhile in
    ``MarkerList`` entities named ``MP:<scope>:...``: if the pass never
    ends, its caller deletes them by that prefix.
    """
    names = [async_.dotted_name(f) if f else None
             for f in (callback, on_failure, keys_sink, range_sink)]
    args = [kind, batchsize, names[0], list(callback_args), namespace,
            names[1], list(on_failure_args), names[2], list(keys_sink_args)]
    if range_sink or scope:  # older workers know the first nine only
        args += [names[3], list(range_sink_args), full_seconds]
    if scope:
        args.append({'scope': scope})
    return async_.defer(_markers_task, args=args, on_failure=on_failure,
                        on_failure_args=on_failure_args)


def run_token(token, position):
    """The token of the run of a markers pass that read range ``position``.

    A pass that took one task has one token; one that went on in further
    tasks has ``[[token, first position], ...]``, one pair a task.
    """
    if token is None or isinstance(token, str):
        return token
    return [run for run, first in token if first <= position][-1]


def run_tokens(token):
    """The tokens of every run of a markers pass."""
    if token is None or isinstance(token, str):
        return [token]
    return [run for run, _ in token]


def pass_name(token):
    """A name for a whole pass: the token of its last run."""
    return token if token is None or isinstance(token, str) else token[-1][0]


def scope_lists(scope):
    """The name prefix of the marker lists of every pass of ``scope``."""
    return 'MP:%s:' % scope


def pass_lists(token, scope=None):
    """The name prefix of the marker lists of a pass that took several
    tasks: its scope's, then its first run's token, which every run of it
    shares (older versions named no scope)."""
    prefix = 'MP:' if scope is None else scope_lists(scope)
    return '%s%s:' % (prefix, run_tokens(token)[0])


def _run_list(first, run, scope):
    """Where one run of a pass keeps its markers for the runs after it;
    ``first`` is the token of the pass's first run (see ``pass_lists``)."""
    return '%s%s:' % (pass_lists(first, scope), run)


@async_.task
def _markers_task(kind, batchsize, callback, callback_args, namespace,
                  on_failure, on_failure_args, keys_sink=None,
                  keys_sink_args=(), range_sink=None, range_sink_args=(),
                  full_seconds=0.0, resume=None):
    """One run of a markers pass; it goes on in a task of its own after
    ``defaults.PASS_SECONDS``, from where a range starts (``resume``)."""
    resume = resume or {}
    scope = resume.get('scope')
    runs = [list(run) for run in resume.get('runs', ())]
    if runs and MarkerList.load(_run_list(runs[0][0], runs[-1][0], scope),
                                runs[-1][2]) is None:
        return  # this pass has delivered its markers already
    first = resume.get('position', 0)
    run = uuid.uuid4().hex[:12]
    token = run if keys_sink or range_sink else None
    to_keys = async_.resolve(keys_sink) if keys_sink else None
    to_store = async_.resolve(range_sink) if range_sink else None
    full_seconds = resume.get('full_seconds', full_seconds) if to_store else 0
    now = time.monotonic()
    stop_at, full_until = now + defaults.PASS_SECONDS, now + full_seconds
    markers, pending, waiting = [], [], 0
    for position, start, full, items in iter_ranges(
            kind, batchsize, namespace, full_seconds, first,
            resume.get('start')):
        if position > first and time.monotonic() >= stop_at:
            if pending:
                to_keys(*keys_sink_args, token, pending)
            first_run = runs[0][0] if runs else run
            put_all(MarkerList.build(
                _run_list(first_run, run, scope), markers))
            args = [kind, batchsize, callback, callback_args, namespace,
                    on_failure, on_failure_args, keys_sink, keys_sink_args,
                    range_sink, range_sink_args, full_seconds]
            async_.defer(_markers_task, args=args + [{
                'scope': scope, 'runs': runs + [[run, first, len(markers)]],
                'position': position, 'start': start, 'full_seconds': max(
                    0.0, full_until - time.monotonic()) if full else 0.0}],
                on_failure=on_failure, on_failure_args=on_failure_args)
            return
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
    if runs:
        earlier = [MarkerList.load(_run_list(runs[0][0], r, scope), count)
                   for r, _, count in runs]
        if any(found is None for found in earlier):
            return  # delivered by an earlier run of this task
        markers = [marker for found in earlier for marker in found] + markers
        if token is not None:
            token = [[r, position] for r, position, _ in runs] + [[run, first]]
    _hand_over(callback, callback_args, markers, token, run, on_failure,
               on_failure_args)
    for r, _, count in runs:
        delete_all(MarkerList.keys(_run_list(runs[0][0], r, scope), count))


def _hand_over(callback, callback_args, markers, token, run, on_failure,
               on_failure_args):
    """Queue the callback's task, its markers in a ``MarkerList`` if many."""
    if len(markers) > _INLINE_MARKERS:
        prefix = 'ML:%s:' % run
        put_all(MarkerList.build(prefix, markers))
        async_.defer(_deliver, args=(callback, list(callback_args), prefix,
                                     len(markers), token),
                     on_failure=on_failure, on_failure_args=on_failure_args)
        return
    args = list(callback_args) + [markers] + ([token] if token else [])
    async_.defer(callback, args=args, on_failure=on_failure,
                 on_failure_args=on_failure_args)


@async_.task
def _deliver(callback, callback_args, prefix, count, token):
    """The callback's task when its markers are in a ``MarkerList``."""
    markers = MarkerList.load(prefix, count)
    if markers is None:
        return  # delivered: a list goes only after its callback has run
    async_.resolve(callback)(*callback_args, markers,
                             *([token] if token else []))
    delete_all(MarkerList.keys(prefix, count))
