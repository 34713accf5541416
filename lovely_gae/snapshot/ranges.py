"""The tasks that store a snapshot, range by range, and purge a deleted one.

Every task here may run twice, or in two workers at once, and still leave
one result: a range is counted and its ``RangeBackup`` written in one
transaction with the snapshot, guarded by the range's bit in
``Snapshot.done``; the loser of a race deletes the parts it wrote.

A kind's markers pass reads the kind once: while its time budget lasts it
stores each range as it reads it (``stage_range``) and the range's task
only commits it; after that it hands each range its keys, and the range's
task reads them with batch gets, which cost the range where a range query
may cost the whole kind on the SDK's stub.
"""
import collections
import itertools
import logging
import threading
import uuid

from google.appengine.ext import db

from .. import async_, batch, defaults, entities
from ..base import (delete_all, get_all, prefixed, put_all, retrying,
                    transaction)
from ..exceptions import RangeCorrupted
from .keylists import RangeKeys, SnapshotMarkers
from .models import RangeBackup, RangeBackupPart, Snapshot
from .storage import RangeWriter

log = logging.getLogger(__name__)

#: Keys deleted per datastore call when purging a snapshot.
_PURGE_BATCH = 500
#: Purge calls made in the caller's request before the rest goes to a task.
_PURGE_INLINE = 20
#: Staged ranges one transaction commits at most: the snapshot and each
#: range's backup are an entity group each; a transaction spans 25.
_COMMIT_BATCH = 20
#: Bytes of staged first parts one commit rewrites at most: a transaction
#: writes 10 MiB at most in production (the SDK's stub does not check).
_COMMIT_BYTES = 8 * 1024 * 1024
#: The end of a staged range whose next range is not at hand.
_OPEN = object()
#: Keys per batch get when a range is read (fewer for large entities).
_GET_BATCH = 500


class _Committed:
    """Staged ranges this process has committed, the newest ``size``.

    A committed range stays committed, so its task, run after the batch
    that committed it, may end without reading anything. The pass token is
    part of the key: it tells apart two snapshots of one id, which two
    testbeds in one process can make.
    """

    def __init__(self, size=20000):
        self._size = size
        self._seen = collections.OrderedDict()
        self._lock = threading.Lock()

    def add(self, snapshot_id, kind, token, positions):
        with self._lock:
            for position in positions:
                self._seen[snapshot_id, kind, token, position] = None
            while len(self._seen) > self._size:
                self._seen.popitem(last=False)

    def __contains__(self, key):
        return key in self._seen


_committed = _Committed()


def get_snapshot(snapshot_id):
    return Snapshot.get_by_id(snapshot_id)


@async_.task
def snapshot_failed(message, snapshot_id):
    """``on_failure`` of a snapshot's tasks: the snapshot goes to ERROR."""
    def fail():
        snap = get_snapshot(snapshot_id)
        if snap is not None and snap.status != Snapshot.STATUS_FINISHED:
            snap.status = Snapshot.STATUS_ERROR
            snap.error = message
            snap.put()
    transaction(fail)


@async_.task
def save_range_keys(snapshot_id, kind, token, ranges_keys):
    """``keys_sink`` of the markers task: one ``RangeKeys`` list per range."""
    lists = []
    for position, references in ranges_keys:
        lists.extend(RangeKeys.build(snapshot_id, kind, position, token,
                                     references))
    put_all(lists)


@async_.task
def markers_ready(snapshot_id, kind, markers, token=None):
    """Record a kind's markers (first ones win) and queue a task per range."""
    put_all(SnapshotMarkers.build(
        SnapshotMarkers.prefix(snapshot_id, kind, token), markers))

    def record():
        snap = get_snapshot(snapshot_id)
        if snap is None:
            return None
        if snap.range_count(kind) is None:
            snap.range_counts[kind] = len(markers) + 1
            snap.key_lists[kind] = token
            if snap.status == Snapshot.STATUS_STARTED:
                snap.status = Snapshot.STATUS_STORING
            snap.put()
        return snap
    snap = transaction(record)
    if snap is None:
        return
    recorded = snap.key_lists.get(kind)
    if recorded != token:
        _discard_pass(snapshot_id, kind, token, markers, recorded)
    if snap.status == Snapshot.STATUS_ERROR:
        return
    bounds = batch.ranges(markers) if recorded == token else snap.ranges(kind)
    async_.defer_many(
        async_.make_task(store_range, args=(
            snapshot_id, kind, position, start, end,
            batch.run_token(recorded, position)),
            on_failure=snapshot_failed, on_failure_args=(snapshot_id,))
        for position, (start, end) in enumerate(bounds))


def _discard_pass(snapshot_id, kind, token, markers, winner):
    """Delete what a markers pass that lost to ``winner`` left behind.

    Tasks of a pass that went on in further tasks can be the winner's too:
    what they stored stays.
    """
    kept = set(batch.run_tokens(winner))
    runs = [(position, batch.run_token(token, position))
            for position in range(len(markers) + 1)]
    runs = [(position, run) for position, run in runs if run not in kept]
    staged = [_staged_key(snapshot_id, kind, position, run)
              for position, run in runs]
    lists = [RangeKeys.key_for(RangeKeys.make_name(
        snapshot_id, kind, position, run, 0)) for position, run in runs]
    spent = SnapshotMarkers.keys(
        SnapshotMarkers.prefix(snapshot_id, kind, token), len(markers))
    found = get_all(staged + lists)
    for backup in filter(None, found[:len(runs)]):
        spent.extend(backup.part_key(index)  # part 0 is its ``data``
                     for index in range(1, backup.parts))
        spent.append(backup.key())
    for (position, run), first in zip(runs, found[len(runs):]):
        if first is not None:
            spent.extend(RangeKeys.part_keys(snapshot_id, kind, position, run,
                                             first.parts))
    for start in range(0, len(spent), _PURGE_BATCH):
        delete_all(spent[start:start + _PURGE_BATCH])


def _key_list(snap, kind, position, token):
    """``(references, keys of the list's parts)`` of a range's key list.

    None if the range was stored meanwhile (its task deleted the list).
    """
    found = RangeKeys.read(snap.id, kind, position, token)
    if found is None:
        if get_snapshot(snap.id).is_done(kind, position):
            return None
        raise RangeCorrupted(snap.id, RangeBackup.prefix(snap.id, kind,
                                                         position),
                             'its key list is missing')
    return found


def _get_all(references):
    """Yield the entities of ``references`` that exist, in that order."""
    batch = 50
    while references:
        chunk, references = references[:batch], references[batch:]
        got = [e for e in entities.get(chunk) if e is not None]
        yield from got
        if got:  # keep a batch near half a part, whatever the entity size
            average = sum(e.ByteSize() for e in got) / len(got)
            batch = max(1, min(_GET_BATCH,
                               int(defaults.PART_SIZE // (2 * average))))


#: What a ``RangeBackup`` records of its stored bytes.
_STORED = ('count', 'raw_size', 'size', 'sha256', 'codec', 'parts',
           'part_size', 'token', 'data')


def _write_range(snapshot_id, kind, position, codec, parts_token, records):
    """Compress ``records``; store every part but the first one.

    Returns ``(stored, keys of the parts written)``: ``stored`` has the
    ``_STORED`` properties of the range's backup, the first part as ``data``.
    """
    prefix = RangeBackup.prefix(snapshot_id, kind, position)
    writer = RangeWriter(codec)
    first = []
    written = []

    def emit(parts):
        for part in parts:
            if not first:
                first.append(part)
                continue
            name = RangeBackupPart.make_name(prefix[:-1], parts_token,
                                             len(written) + 1)
            written.append(retrying(
                RangeBackupPart(key_name=name, data=part).put))
    emit(writer.add_all(records))
    emit(writer.close())
    stored = dict(count=writer.count, raw_size=writer.raw_size,
                  size=writer.size, sha256=writer.sha256,
                  codec=writer.codec, parts=len(written) + 1,
                  part_size=writer.part_size, token=parts_token,
                  data=first[0] if first else b'')
    return stored, written


@async_.task
def stage_range(snapshot_id, kind, codec, token, position, start, items):
    """``range_sink`` of the markers pass: store a range it has just read.

    The range is written under a staging name (``RangeBackup.staging_name``)
    with its parts; its task commits it (``store_range``). A pass that runs
    twice stages twice under two tokens; only the recorded token's ranges
    are committed, the others go when the snapshot is deleted.
    """
    stored, _ = _write_range(snapshot_id, kind, position, codec, token,
                             map(entities.EntityProto.SerializeToString,
                                 items))
    retrying(RangeBackup(
        key_name=RangeBackup.staging_name(snapshot_id, kind, position, token),
        range_kind=kind, position=position, start=start, **stored).put)


@async_.task
def store_range(snapshot_id, kind, position, start, end, token=None):
    """Store the entities of one range; a no-op if it is stored already.

    A range the markers pass staged is committed as it is; any other is
    read by the keys the pass listed.
    """
    if (snapshot_id, kind, token, position) in _committed:
        return
    wanted = [Snapshot.key_for(snapshot_id)]
    if token is not None:  # one read for both: most ranges are done by now
        wanted.append(_staged_key(snapshot_id, kind, position, token))
    snap, staged = (retrying(db.get, wanted) + [None])[:2]
    if staged is not None:  # its parts become the backup's
        _commit_staged(snapshot_id, kind, position, start, end, token,
                       staged)
        return
    if (snap is None or snap.status == Snapshot.STATUS_ERROR
            or snap.is_done(kind, position)):
        return
    if token is None:  # queued by a version without key lists
        source, list_keys = entities.iter_range(kind, snap.namespace, start,
                                                end), []
    else:
        found = _key_list(snap, kind, position, token)
        if found is None:
            return
        references, list_keys = found
        source = _get_all(references)
    stored, written = _write_range(
        snapshot_id, kind, position, snap.codec, uuid.uuid4().hex[:12],
        (entity.SerializeToString() for entity in source))
    committed = _commit(snapshot_id, kind, [(position, start, end, stored)])
    retrying(db.delete, list_keys)  # the key list has served
    if not committed:
        retrying(db.delete, written)  # the winner's parts are others


def _staged_key(snapshot_id, kind, position, token):
    return RangeBackup.key_for(RangeBackup.staging_name(
        snapshot_id, kind, position, token))


def _commit_staged(snapshot_id, kind, position, start, end, token, staged):
    """Commit the staged range ``position`` and the staged ranges after it.

    One transaction counts up to ``_COMMIT_BATCH`` ranges, so the tasks of
    the next ones find them done. A range is committed only if its end is
    known: the start of the staged range after it, or the kind's end.
    """
    after = get_all([
        _staged_key(snapshot_id, kind, position + index, token)
        for index in range(1, _COMMIT_BATCH + 1)])
    chain = [staged] + list(itertools.takewhile(bool, after))
    run = _within_bytes(chain)
    ends = [end] + [found.start for found in chain[2:len(run) + 1]]
    ends += [_OPEN] * (len(run) - len(ends))
    ranges = [(position + index, start if index == 0 else found.start,
               limit, {name: getattr(found, name) for name in _STORED})
              for index, (found, limit) in enumerate(zip(run, ends))]
    committed = _commit(snapshot_id, kind, ranges)
    _committed.add(snapshot_id, kind, token,
                   [backup.position for backup in committed])
    delete_all([staged.key()] + [
        _staged_key(snapshot_id, kind, backup.position, token)
        for backup in committed if backup.position != position])


def _within_bytes(chain):
    """The staged ranges of ``chain`` (at least its first) that one
    transaction may write: their first parts, ``_COMMIT_BYTES`` at most."""
    held = 0
    for index, found in enumerate(chain):
        held += len(found.data or b'')
        if index and held > _COMMIT_BYTES:
            return chain[:index]
    return chain


def _commit(snapshot_id, kind, ranges):
    """Count ``ranges``, ``[(position, start, end, stored), ...]``, with
    their backups, in one transaction; the backups it wrote.

    A range counted already (by another run of a task) is passed over; so
    is a range whose end is ``_OPEN``, unless it is the kind's last, and
    every range after it.
    """
    def commit():
        current = get_snapshot(snapshot_id)
        if current is None or current.status == Snapshot.STATUS_ERROR:
            return []
        last = current.range_count(kind) - 1
        committed = []
        for position, start, end, stored in ranges:
            if end is _OPEN:
                if position != last:
                    break  # where this range ends is not known here
                end = None
            if not current.is_done(kind, position):
                committed.append(_backup(snapshot_id, kind, position, start,
                                         end, stored))
                _count_in(current, committed[-1])
        if committed:
            db.put(committed + [current])
        return committed
    return transaction(commit)


def _backup(snapshot_id, kind, position, start, end, stored):
    return RangeBackup(
        key_name=RangeBackup.make_name(snapshot_id, kind, position,
                                       stored['size']),
        snapshot=Snapshot.key_for(snapshot_id), range_kind=kind,
        position=position, start=start, end=end, **stored)


def _count_in(snap, backup):
    """Count ``backup`` into ``snap`` (in a transaction that writes both)."""
    snap.entity_count += backup.count
    snap.stored_bytes += backup.size
    if snap.mark_done(backup.range_kind, backup.position):
        snap.finished_kinds.append(backup.range_kind)
        if set(snap.finished_kinds) >= set(snap.kinds):
            snap.status = Snapshot.STATUS_FINISHED


def delete_snapshot(snap):
    """Delete ``snap`` with its stored ranges; a task finishes large ones."""
    snapshot_id = snap.id
    # Marker lists a pass in several tasks may have left (see ``batch``):
    # under ``MP:<id>:``, or named by the pass alone by older versions.
    lists = sorted({batch.pass_lists(token) for token in
                    snap.key_lists.values() if isinstance(token, list)} |
                   {batch.scope_lists(snapshot_id)})
    if _purge(snapshot_id, _PURGE_INLINE, lists):
        retrying(db.delete, snap.key())
        return

    def handover():
        db.delete(snap.key())
        async_.defer(purge_snapshot, args=(snapshot_id, lists))
    transaction(handover)


@async_.task
def purge_snapshot(snapshot_id, lists=()):
    """Task: delete what is left of a deleted snapshot, batch by batch."""
    if not _purge(snapshot_id, _PURGE_INLINE, lists):
        async_.defer(purge_snapshot, args=(snapshot_id, lists),
                     once_only=False)


def _purge(snapshot_id, max_batches, lists=()):
    """Delete up to ``max_batches`` batches; True once nothing is left."""
    prefixes = ((RangeBackupPart, 'RBP:%d:' % snapshot_id),
                (RangeKeys, 'RK:%d:' % snapshot_id),
                (SnapshotMarkers, 'SM:%d:' % snapshot_id),
                (RangeBackup, 'RBS:%d:' % snapshot_id),
                (RangeBackup, 'RB:%d:' % snapshot_id)) + tuple(
        (batch.MarkerList, prefix) for prefix in lists)
    for _ in range(max_batches):
        keys = []
        for model, prefix in prefixes:
            for key in prefixed(model, prefix, keys_only=True):
                keys.append(key)
                if len(keys) >= _PURGE_BATCH:
                    break
            if len(keys) >= _PURGE_BATCH:
                break
        if not keys:
            return True
        delete_all(keys)
    return False
