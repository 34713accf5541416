"""Create, find, restore and prune snapshots."""
import datetime
import itertools
import re

from google.appengine.api import datastore_types, namespace_manager
from google.appengine.ext import db

from .. import async_, defaults, entities
from ..base import retrying, transaction
from ..exceptions import (EmptyKind, InvalidInput, RestoreNotFound,
                          SnapshotInUse, SnapshotNotFound)
from .work import deleting, passes, plan, ranges, restore, shards
from . import storage
from .models import Snapshot
from .restores import RESTORE_ID, Restore, begun_key
from .statuses import prunable

__all__ = ['create_snapshot', 'get_kinds', 'get_snapshot', 'get_restore',
           'list_snapshots', 'snapshot_cursor', 'latest_snapshot', 'prune',
           'prunable']

#: Every module that defines tasks: imported with ``api``, which every way
#: to start work or to run it (the app's worker, ``LocalClient``, tests)
#: imports, so that a process that runs tasks (a worker that never started
#: one) has them registered. ``restore``, ``plan`` and ``deleting`` also do
#: the work of ``Snapshot.restore`` and ``Snapshot.delete``
#: (``models.ACTIONS``).
TASK_MODULES = (deleting, passes, plan, ranges, restore, shards)

#: More entities per range than this would not fit the range's bookkeeping.
MAX_BATCH_SIZE = 100000


def validate_kind(kind):
    if not isinstance(kind, str) or not kind:
        raise InvalidInput('kind', kind, 'must be a non-empty string')
    if kind.startswith('__') and kind.endswith('__'):
        raise InvalidInput('kind', kind, 'names like __x__ are reserved')
    if len(kind.encode('utf-8')) > defaults.MAX_NAME_BYTES:
        raise InvalidInput('kind', kind[:20] + '...', 'longer than %d bytes'
                           % defaults.MAX_NAME_BYTES)
    return kind


def validate_batchsize(value):
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if (isinstance(value, bool) or not isinstance(value, int)
            or not 0 < value <= MAX_BATCH_SIZE):
        raise InvalidInput('batchsize', value, 'must be an integer from 1 to %d'
                           % MAX_BATCH_SIZE)
    return value


def validate_namespace(namespace):
    """The namespace (default: the current one) a snapshot may be taken of.

    Never the library's own: its tasks name code that workers run, so its
    entities must not go into a snapshot that a restore puts back.
    """
    if namespace is None:
        namespace = namespace_manager.get_namespace()
    try:
        namespace_manager.validate_namespace(namespace)
    except namespace_manager.BadValueError as exc:
        raise InvalidInput('namespace', namespace,
                           'must be up to 100 of [0-9A-Za-z._-]') from exc
    if namespace == defaults.NAMESPACE:
        raise InvalidInput('namespace', namespace, "is the library's own")
    return namespace


def get_kinds(namespace=None):
    """Kinds of ``namespace`` (default: the current one) a snapshot can hold."""
    return entities.kinds(validate_namespace(namespace))


def _has_entities(kind, namespace):
    return next(entities.iter_range(kind, namespace, keys_only=True,
                                    batch_size=1), None) is not None


#: Namespaces that an error of a namespace without the entities asked for
#: looks into, at most, for those that hold them.
_HINT_NAMESPACES = 20


def _elsewhere(namespace, kind=None):
    """Other namespaces that hold entities (of ``kind``): where a snapshot
    asked of the wrong namespace may have been meant. The first
    ``_HINT_NAMESPACES`` are looked into; only an error pays for it."""
    return list(itertools.islice((
        other for other in entities.namespaces(_HINT_NAMESPACES)
        if other not in (namespace, defaults.NAMESPACE)
        and (kind is None or _has_entities(kind, other))), 3))


def _no_entities(namespace):
    """``InvalidInput`` of ``namespace``, which has no entities of any
    kind: ``(namespace 'demo' has some)`` where another has."""
    others = _elsewhere(namespace)
    where = ''
    if others:
        where = ' (%s some)' % (
            'namespace %r has' % others[0] if len(others) == 1 else
            'namespaces %s have' % ', '.join(map(repr, others)))
    return InvalidInput('namespace', namespace,
                        'has no entities of any kind' + where)


def _check_not_empty(kinds, namespace):
    """Raise ``EmptyKind`` for the first of ``kinds`` without entities."""
    for kind in kinds:
        if not _has_entities(kind, namespace):
            raise EmptyKind(kind, namespace,
                            datastore_types.ResolveAppId(None),
                            _elsewhere(namespace, kind))


def create_snapshot(kinds=None, batchsize=None, namespace=None, codec=None,
                    allow_empty=True):
    """Start a snapshot of ``kinds`` (default: all) of ``namespace``.

    Everything is checked before anything is written: a bad argument raises
    ``InvalidInput`` and creates no snapshot. Without ``allow_empty`` a
    kind that has no entities (often a typo) is one (``EmptyKind``).
    """
    batchsize = validate_batchsize(
        defaults.BATCH_SIZE if batchsize is None else batchsize)
    namespace = validate_namespace(namespace)
    codec = storage.check_codec(codec or defaults.CODEC)
    if kinds is None:
        kinds = get_kinds(namespace)
        if not allow_empty:  # the kinds listed may have none left
            kinds = [kind for kind in kinds if _has_entities(kind, namespace)]
            if not kinds:
                raise _no_entities(namespace)
    elif isinstance(kinds, str):
        raise InvalidInput('kinds', kinds, 'must be a list of kind names')
    kinds = list(dict.fromkeys(validate_kind(kind) for kind in kinds))
    if not allow_empty:
        _check_not_empty(kinds, namespace)
    # The samples are on their way while the id is allocated and the
    # transaction begins.
    cuts = passes.sample_kinds(kinds, namespace)
    [snapshot_id, _] = retrying(db.allocate_ids, Snapshot.key_for(1), 1)
    snap = Snapshot(key=Snapshot.key_for(snapshot_id), kinds=kinds,
                    namespace=namespace, batchsize=batchsize, codec=codec)
    if not kinds:
        snap.status = Snapshot.STATUS_FINISHED
    return transaction(_start, snap, cuts, [])


def _start(snap, cuts, tried):
    """Store ``snap`` and its first tasks, which commit with it; a snapshot
    whose kinds were cut as it was created is storing from its start. Its
    id is allocated before, so both are written at once; and a commit that
    landed though it timed out, tried again, finds the snapshot stored and
    leaves it as its tasks have made it since (not a second snapshot)."""
    if tried:
        stored = db.get(snap.key())
        if stored is not None:
            return stored
    tried.append(True)
    cuts = cuts()
    if cuts:
        snap.status = Snapshot.STATUS_STORING
    put = db.put_async(snap)
    async_.defer_many(passes.first_tasks(snap, cuts))
    put.get_result()
    return snap


def get_snapshot(snapshot_id):
    """The snapshot with this id (or key); ``SnapshotNotFound`` if none."""
    if isinstance(snapshot_id, db.Key):
        snap = db.get(snapshot_id)
    else:
        try:
            snapshot_id = int(snapshot_id)
        except (TypeError, ValueError):
            raise SnapshotNotFound(snapshot_id) from None
        snap = Snapshot.get_by_id(snapshot_id) if snapshot_id > 0 else None
    if not isinstance(snap, Snapshot):
        raise SnapshotNotFound(snapshot_id)
    return snap


def get_restore(snapshot_id, restore_id):
    """Restore (or dry run) ``restore_id`` of snapshot ``snapshot_id``, and
    whether its writing began, read by their keys in one call;
    ``RestoreNotFound`` if it is none of that snapshot's, ``InvalidInput``
    if it is no restore's id."""
    if not isinstance(restore_id, str) or not RESTORE_ID.match(restore_id):
        raise InvalidInput('restore id', restore_id[:40] if isinstance(
            restore_id, str) else restore_id, 'must be 32 hex digits')
    found, begun = db.get([Restore.key_for(restore_id),
                           begun_key(snapshot_id, restore_id)])
    if found is None or found.snapshot_id != snapshot_id:
        raise RestoreNotFound(snapshot_id, restore_id)
    return found, begun is not None


# A listing's cursor: the created time (microseconds since 1970) and the
# id of the last snapshot listed.
_CURSOR = re.compile(r'([0-9]{1,19})\.([0-9]{1,19})\Z')
_EPOCH = datetime.datetime(1970, 1, 1)
_MICROSECOND = datetime.timedelta(microseconds=1)


def list_snapshots(limit=None, after=None):
    """Snapshots, newest first, at most ``limit``; with ``after`` (the
    ``snapshot_cursor`` of one listed), those after it.

    The cursor holds the created time of the last one listed, so the query
    starts there and reads only what it lists, whatever came or went
    since; ties of a created time go by id, as the datastore orders them.
    """
    query = Snapshot.all().order('-created')
    if after is None:
        return list(query.run(limit=limit, batch_size=100))
    created, last_id = _parse_cursor(after)
    query.filter('created <=', created)
    found = []
    for snap in query.run(batch_size=min(limit or 100, 100) + 1):
        if snap.created == created and snap.key().id() <= last_id:
            continue  # listed before the cursor
        found.append(snap)
        if len(found) == limit:
            break
    return found


def snapshot_cursor(snap):
    """The cursor that lists the snapshots after ``snap``
    (``list_snapshots(after=...)``)."""
    return '%d.%d' % ((snap.created - _EPOCH) // _MICROSECOND, snap.id)


def _parse_cursor(text):
    match = _CURSOR.match(text) if isinstance(text, str) else None
    try:
        if match:
            micros, last_id = map(int, match.groups())
            return _EPOCH + micros * _MICROSECOND, last_id
    except OverflowError:
        pass
    raise InvalidInput('after', text if not isinstance(text, str)
                       else text[:40], 'no cursor of a listing')


def latest_snapshot():
    """The newest finished snapshot, or None."""
    for snap in Snapshot.all().order('-created').run(batch_size=20):
        if snap.status == Snapshot.STATUS_FINISHED:
            return snap
    return None


def prune(keep, only=None):
    """Keep the newest ``keep`` finished snapshots that hold entities;
    delete older ones (see ``prunable``). One that is being restored stays
    until its restore has ended. Returns the ids deleted.

    ``only``: the ids a user agreed to delete, from ``prunable`` on a
    listing of theirs; of those, only the ones still prunable go. A
    snapshot finished since pushes out no other.
    """
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
        raise InvalidInput('keep', keep, 'must be an integer >= 0')
    snaps = list_snapshots()
    doomed = set(prunable([(snap.id, snap.status, snap.entity_count)
                           for snap in snaps], keep))
    if only is not None:
        doomed.intersection_update(only)
    deleted = []
    for snap in snaps:
        if snap.id not in doomed:
            continue
        try:
            snap.delete()
        except SnapshotInUse:
            continue
        deleted.append(snap.id)
    return deleted
