"""How a snapshot starts on each kind, and the key passes of small kinds.

A kind is sampled: the datastore is asked for some of its keys, taken at
random (``__scatter__``, as the SDK's ``key_range`` finds split points),
as its snapshot is created (``sample_kinds``), or by the kind's first task
for a snapshot of many kinds. A large kind is cut into ``defaults.SHARDS``
shards (``shard_starts``), each stored by a task of its own that reads its
entities in key order (``shards``): no pass over its keys comes first.
Shard ``s`` numbers its ranges from ``s * models.SHARD_STRIDE`` on.

A small kind, with fewer sampled keys, is passed over as the seed did: a
pass reads its keys only and cuts them into ranges of ``batchsize``
entities; a range starts at the key of its first entity (the seed's
markers are these starts, but the first). The pass hands its ranges on,
``CHUNK`` at a time, to ``markers_ready``, a task that queues the range
tasks (``ranges.store_ranges``), all at once: one a range, as the seed's
doctest counts them, or ``ranges.PER_TASK`` a task past the first chunk.
A pass works ``defaults.PASS_SECONDS`` a task, then goes on in a task of
its own.

A task may run twice, over data that changed in between: what the first
run decided (how the kind is cut, where a chunk of ranges ends) is stored
first (``base.put_first``) and kept. A cut taken as the snapshot is
created is kept in its first task's arguments, which commit with it.
"""
import time

from google.appengine.api import datastore
from google.appengine.ext import db

from ... import async_, defaults, entities
from ...base import put_first, transaction
from . import ranges, shards
from ..markers import KindShards, SnapshotMarkers
from ..models import Snapshot

__all__ = ['SAMPLE', 'CHUNK', 'sample_kinds', 'first_tasks',
           'shard_starts', 'even_ids', 'start_kind',
           'pass_kinds', 'pass_kind', 'pass_on', 'markers_ready']

#: Keys sampled by ``__scatter__``: a kind that has fewer is small.
SAMPLE = 128
#: Keys sampled for each shard of a large kind (as far as
#: ``_MOST_SAMPLED`` allows): the more, the more even the shards.
OVERSAMPLE = 64
#: Keys sampled at most: reading them delays every shard.
_MOST_SAMPLED = 1024
#: The Kolmogorov-Smirnov test's critical value times the square root of
#: the keys sampled, at the 1% level (``even_ids``).
_EVEN = 1.63
#: Ranges a pass hands on at a time (a multiple of ``ranges.PER_TASK``).
CHUNK = 50
#: Keys a pass reads per query batch.
_KEYS_BATCH = 1000
#: Kinds whose first tasks are queued with their snapshot, in the
#: transaction that stores it (25 entity groups: the snapshot's, and each
#: task's).
_FIRST_KINDS = 23
#: First tasks a fan-out task queues, with the next fan-out task.
_FAN_OUT = 100


def sample_kinds(kinds, namespace):
    """Sample ``kinds`` at once, as a snapshot of them is created: its
    first tasks carry how they are cut. Returns ``cuts()``, which waits
    for the samples (once) and returns ``{kind: shard starts}`` of the
    large kinds (``shard_starts``). Nothing for more kinds than have first
    tasks of their own, or inside a transaction (which queries could not
    run in): their first tasks sample them."""
    if len(kinds) > _FIRST_KINDS or datastore.IsInTransaction():
        return dict
    sent = [(kind, _send_sample(kind, namespace)) for kind in kinds]
    found = []

    def cuts():
        if not found:
            found.append({kind: starts for kind, starts in (
                (kind, shard_starts(kind, namespace, sample))
                for kind, sample in sent) if starts is not None})
        return found[0]
    return cuts


def first_tasks(snap, cuts=None):
    """The tasks that start ``snap``: one a kind, or for many kinds one
    that queues them a page at a time. A kind of ``cuts`` (see
    ``sample_kinds``) is started as it was cut: the tasks of its shards
    commit with the snapshot while they are few enough (``_FIRST_KINDS``
    tasks in all), else a task of the kind queues them (``start_kind``).
    Any other kind is cut by its first task."""
    kinds = len(snap.kinds)
    if kinds > _FIRST_KINDS:
        return [_task(pass_kinds, snap.id, kinds, 0)]
    cuts = cuts or {}
    few = (kinds - len(cuts) + sum(map(len, cuts.values()))
           <= _FIRST_KINDS)
    tasks = []
    for index, kind in enumerate(snap.kinds):
        if kind not in cuts:
            tasks.append(_kind_task(snap, index))
        elif few:
            tasks += _shard_tasks(snap.id, index, kind, snap.namespace,
                                  cuts[kind])
        else:
            tasks.append(_task(start_kind, snap.id, index, kind,
                               snap.namespace, cuts[kind]))
    return tasks


def _task(func, snapshot_id, *args):
    return async_.make_task(func, args=(snapshot_id,) + args,
                            on_failure=ranges.snapshot_failed,
                            on_failure_args=(snapshot_id,))


def _kind_task(snap, kind_index):
    return _task(pass_kind, snap.id, kind_index, snap.kinds[kind_index],
                 snap.namespace)


@async_.task
def pass_kinds(snapshot_id, kinds, first):
    """Task: queue the first tasks of kinds ``first`` on, a page of them,
    and the task that queues the next page."""
    snap = Snapshot.get_by_id(snapshot_id)
    if snap is None or snap.status == Snapshot.STATUS_ERROR:
        return
    last = min(kinds, first + _FAN_OUT)
    tasks = [_kind_task(snap, index) for index in range(first, last)]
    if last < kinds:
        tasks.append(_task(pass_kinds, snapshot_id, kinds, last))
    async_.defer_many(tasks)


def _send_sample(kind, namespace):
    """The sample of ``shard_starts``, and the kind's first key, on their
    way at once (each read by iterating). Not its last key: a query in
    descending key order needs a composite index (``index.yaml``) that
    the user would have to deploy for each kind."""
    def query(order, **options):
        found = datastore.Query(kind, namespace=namespace, keys_only=True)
        found.Order(order)
        return found.Run(**options)
    most = min(max(SAMPLE, defaults.SHARDS * OVERSAMPLE), _MOST_SAMPLED)
    return (query('__scatter__', limit=most, batch_size=most),
            query('__key__', limit=1))


def shard_starts(kind, namespace, sent=None):
    """``[None, first key of shard 1, ...]`` for a large kind, None for a
    small one (``sent``: its sample, if on its way already).

    The datastore sets ``__scatter__`` on a random share of entities: those
    that sort first by it are spread evenly over the kind's keys. A kind
    with fewer than ``SAMPLE`` of them is small; a larger one is cut into
    ``defaults.SHARDS`` (``even_ids``, else at evenly spaced sampled keys).
    """
    sample, first = sent or _send_sample(kind, namespace)
    found = sorted(sample, key=lambda key: entities.sort_key(key._ToPb()))
    if len(found) < SAMPLE:
        return None
    starts = even_ids(found, defaults.SHARDS, next(iter(first), None))
    if starts is None:
        starts = [None] + [found[shard * len(found) // defaults.SHARDS]
                           for shard in range(1, defaults.SHARDS)]
    return [key for number, key in enumerate(starts)
            if number == 0 or key != starts[number - 1]]


def even_ids(found, shards, first=None):
    """Where ``shards`` shards of equal spans of ids start, if the sampled
    keys ``found`` (in key order) are ids of root entities that look spread
    evenly over their span, else None. The span runs from the kind's
    ``first`` key, where it is the id of a root entity, else from a gap
    between sampled ids below the lowest; it ends a gap beyond the highest
    (the kind's last key would take a query in descending key order, which
    needs a composite index: see ``_send_sample``).

    So are the ids the datastore allocates (scattered over 52 bits) and
    ids counted up from 1 by an app: then even spans of ids hold even
    shares of the entities, closer than a cut at sampled keys, whose
    shares vary by about one in the square root of the keys per shard.
    Evenly spread: a Kolmogorov-Smirnov test against an even spread from
    the lowest sampled id to the highest, at the 1% level (``_EVEN``): a
    kind whose ids are spread evenly but whose sample is taken for
    uneven is cut at sampled keys, the worse cut, so the test errs seldom
    that way; one whose sample passes yet is not even is cut about as
    far off as a cut at sampled keys could be (both are bounded by how
    far the sample is from the kind).
    """
    if not all(_root_id(key) for key in found):
        return None
    ids, count = [key.id() for key in found], len(found)
    low, high = ids[0], ids[-1]
    if high - low < count * shards:
        return None
    farthest = max(max(abs(rank / count - (id_ - low) / (high - low)),
                       abs((rank + 1) / count - (id_ - low) / (high - low)))
                   for rank, id_ in enumerate(ids))
    if farthest > _EVEN / count ** 0.5:
        return None
    gap = (high - low) / (count - 1)  # the ends lie about a gap beyond
    low = first.id() if _root_id(first) else low - gap
    span = high + gap - low
    sampled = found[0]
    return [None] + [
        datastore.Key.from_path(
            sampled.kind(), max(1, round(low + span * shard / shards)),
            _app=sampled.app(), namespace=sampled.namespace())
        for shard in range(1, shards)]


def _root_id(key):
    return key is not None and key.parent() is None and key.id() is not None


@async_.task
def pass_kind(snapshot_id, kind_index, kind, namespace):
    """Task: decide how a kind is stored; start it.

    The snapshot is read where the cut is kept, not before the sample.
    """
    snap, cut = transaction(_decide, Snapshot.key_for(snapshot_id),
                            KindShards.build(snapshot_id, kind,
                                             shard_starts(kind, namespace)))
    if snap is None or snap.status == Snapshot.STATUS_ERROR:
        return
    starts = cut.keys()
    if starts is None:
        _pass(snap, kind_index, None, 0, 0)
        return
    # Shard 0's query is on its way while the other shards are queued.
    reader = shards.Reader(kind, namespace, None, _ends(starts)[0])
    _queue_shards(snapshot_id, kind_index, kind, namespace, starts)
    shards.store(snap, kind_index, 0, len(starts), reader, _ends(starts)[0])


@async_.task
def start_kind(snapshot_id, kind_index, kind, namespace, starts):
    """Task: store a kind cut as its snapshot was created, into shards
    that start at ``starts``."""
    # Shard 0's query and the snapshot's read are on their way while the
    # other shards are queued (each reads the snapshot as it starts).
    reader = shards.Reader(kind, namespace, None, _ends(starts)[0])
    snap = db.get_async(Snapshot.key_for(snapshot_id))
    _queue_shards(snapshot_id, kind_index, kind, namespace, starts)
    snap = snap.get_result()
    if snap is not None and snap.status != Snapshot.STATUS_ERROR:
        shards.store(snap, kind_index, 0, len(starts), reader,
                     _ends(starts)[0])


def _ends(starts):
    return starts[1:] + [None]


def _queue_shards(snapshot_id, kind_index, kind, namespace, starts):
    """Queue the tasks of the shards that start at ``starts``, but 0."""
    async_.defer_many(_shard_tasks(snapshot_id, kind_index, kind, namespace,
                                   starts, first=1))


def _shard_tasks(snapshot_id, kind_index, kind, namespace, starts, first=0):
    """The tasks of the shards that start at ``starts``, from ``first``."""
    ends = _ends(starts)
    return [shards.shard_task(snapshot_id, kind_index, kind, namespace,
                              shard, len(starts), starts[shard], ends[shard])
            for shard in range(first, len(starts))]


def _decide(snapshot_key, cut):
    """Keep the first cut of a kind; the snapshot is ``storing`` now.
    Returns the snapshot (None if gone) and the cut kept."""
    snap, stored = db.get([snapshot_key, cut.key()])
    if snap is None or snap.status == Snapshot.STATUS_ERROR:
        return snap, stored or cut
    changed = [] if stored is not None else [cut]
    if snap.status == Snapshot.STATUS_STARTED:
        snap.status = Snapshot.STATUS_STORING
        changed.append(snap)
    if changed:
        db.put(changed)
    return snap, stored or cut


@async_.task
def pass_on(snapshot_id, kind_index, start, index, chunk):
    """Task: go on with a small kind's pass from range ``index``, which
    starts at ``start``, the first of chunk ``chunk``."""
    snap = Snapshot.get_by_id(snapshot_id)
    if snap is not None and snap.status != Snapshot.STATUS_ERROR:
        _pass(snap, kind_index, start, index, chunk)


def _pass(snap, kind_index, start, index, chunk):
    """Pass over a small kind's keys from ``start``, handing ranges on a
    chunk at a time. Where a pass that ran before handed a chunk on
    otherwise (the data changed in between), this one goes on from where
    that chunk ended."""
    kind = snap.kinds[kind_index]
    stop_at = time.monotonic() + defaults.PASS_SECONDS
    starts, count = [start], 0
    for reference in entities.iter_range_keys(kind, snap.namespace, start,
                                              batch_size=_KEYS_BATCH):
        if count == snap.batchsize:
            starts.append(entities.key(reference))
            count = 0
            if len(starts) > CHUNK:  # a chunk, and where the next begins
                stored = _hand_on(snap, kind_index, chunk, index,
                                  starts[:CHUNK], starts[CHUNK])
                if (stored.after != starts[CHUNK]
                        or time.monotonic() >= stop_at):
                    _next(snap, kind_index, index, chunk, stored)
                    return
                chunk, index, starts = chunk + 1, index + CHUNK, starts[CHUNK:]
        count += 1
    _next(snap, kind_index, index, chunk,
          _hand_on(snap, kind_index, chunk, index, starts, None))


def _per_task(last_chunk):
    """Range tasks of a pass whose last chunk is ``last_chunk``: one a
    range if there is one chunk, as the seed counts them."""
    return 1 if last_chunk == 0 else ranges.PER_TASK


def _hand_on(snap, kind_index, chunk, index, starts, after):
    """Keep a chunk of ranges, which start at ``starts`` (the next chunk at
    ``after``, None after the last), unless a pass that ran before kept one
    here; queue the tasks that store the chunk kept, which is returned."""
    stored = put_first(SnapshotMarkers.build(
        snap.id, snap.kinds[kind_index], 0, chunk, index, starts, after))
    per = _per_task(chunk) if stored.after is None else ranges.PER_TASK
    async_.defer(markers_ready, args=(
        snap.id, kind_index, chunk, index, stored.all_starts(), stored.after,
        per), on_failure=ranges.snapshot_failed, on_failure_args=(snap.id,))
    return stored


def _next(snap, kind_index, index, chunk, stored):
    """After chunk ``chunk`` (``stored``, from range ``index`` on): the
    pass has ended, or goes on in a task of its own."""
    if stored.after is None:
        tasks = (chunk * (CHUNK // ranges.PER_TASK)
                 + -(-len(stored.all_starts()) // _per_task(chunk)))
        ranges.shard_done(snap.id, kind_index, 0, 1, tasks)
        return
    async_.defer_many([_task(pass_on, snap.id, kind_index, stored.after,
                             index + CHUNK, chunk + 1)])


@async_.task
def markers_ready(snapshot_id, kind_index, chunk, index, starts, end, per):
    """Task: queue the tasks that store a chunk of a small kind's ranges,
    ``per`` a task (the seed's callback of the key pass).

    Range ``index + i`` runs from ``starts[i]`` up to the next start, the
    last up to ``end``.
    """
    snap = Snapshot.get_by_id(snapshot_id)
    if snap is None or snap.status == Snapshot.STATUS_ERROR:
        return
    bounds = list(zip(starts, starts[1:] + [end]))
    leaf = chunk * (CHUNK // per)
    async_.defer_many(
        _task(ranges.store_ranges, snapshot_id, kind_index,
              snap.kinds[kind_index], snap.namespace, snap.codec, 0, 1,
              leaf + offset // per,
              [(index + offset + i, start, stop) for i, (start, stop)
               in enumerate(bounds[offset:offset + per])])
        for offset in range(0, len(bounds), per))
