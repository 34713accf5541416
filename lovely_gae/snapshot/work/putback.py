"""Reading ranges back, checked, and putting them back in place.

``records`` checks a range as it reads it: its bytes (before the first
record is handed out), each entity's kind, namespace and key bounds, and
its entity count. ``put_back`` puts the ranges of one task back and
deletes what is now stored within their bounds that they lack.
"""
import collections

from google.appengine.ext import db

from ... import cache, defaults, entities
from ...exceptions import RangeCorrupted
from ..models import RangeBackup, backup_bounds, in_order

__all__ = ['records', 'check', 'SentBackups', 'read_backups', 'put_back']

#: Bytes of entities per put request at most: the request's own fields
#: need a little of the datastore's 1 MiB.
_PUT_BYTES = defaults.MAX_REQUEST_BYTES - 1024
#: Puts one task has on their way at once, at most.
_PUTS_IN_FLIGHT = 8
#: Bytes of range backups one query batch brings at most (their first
#: parts hold ``defaults.PART_SIZE`` each at most).
_BACKUP_BYTES = 8 << 20


def _bounds(backup):
    return tuple(None if key is None else entities.sort_key(key._ToPb())
                 for key in (backup.start, backup.end))


def records(backup, namespace):
    """Yield ``(record, reference)`` of a range, checked on the way: its
    bytes (before the first is handed out), kind, namespace and bounds."""
    start, end = _bounds(backup)
    count = 0
    for record in backup.iter_records():
        reference = entities.EntityProto.FromString(record).key
        place = entities.sort_key(reference)
        if (reference.path.element[-1].type != backup.range_kind
                or reference.name_space != namespace
                or start is not None and place < start
                or end is not None and place >= end):
            raise RangeCorrupted(backup.snapshot_id, backup.name,
                                 'holds an entity outside the range')
        count += 1
        yield record, reference
    if count != backup.count:
        raise RangeCorrupted(backup.snapshot_id, backup.name,
                             'holds %d entities, %d were stored'
                             % (count, backup.count))


def check(backups, namespace):
    """Read ``backups`` through ``records``: raise if one is damaged."""
    for backup in backups:
        collections.deque(records(backup, namespace), maxlen=0)


class SentBackups:
    """The query for range backups ``first`` to ``first + count - 1`` of
    ``kind``, sent: one call, under way while the caller reads other
    things; ``read_backups`` has them."""

    def __init__(self, snapshot_id, kind, first, count):
        self.snapshot_id, self.kind = snapshot_id, kind
        self.first, self.count = first, count
        self.query = entities.send_range(
            RangeBackup.kind(), defaults.NAMESPACE,
            *backup_bounds(snapshot_id, kind, first, count),
            batch_size=count + 1, max_batch_bytes=_BACKUP_BYTES)


def read_backups(sent):
    """The range backups ``SentBackups`` asked for, in order;
    ``SnapshotIncomplete`` names those that are not there exactly once."""
    found = (db.model_from_protobuf(entity)
             for entity in entities.read_range(sent.query))
    return in_order(sent.snapshot_id, sent.kind, sent.first, sent.count,
                    ((backup.key().name(), backup) for backup in found))


class _Puts:
    """Puts on their way, ``_PUTS_IN_FLIGHT`` at most: the task waits for
    the datastore once for many calls, not once a call."""

    def __init__(self):
        self.in_flight = collections.deque()
        self.count = 0

    def send(self, chunk):
        locked = cache.lock([reference for _, reference in chunk])
        self.in_flight.append((entities.SentPut(
            [record for record, _ in chunk]), locked))
        self.count += len(chunk)
        if len(self.in_flight) > _PUTS_IN_FLIGHT:
            self.landed()

    def landed(self):
        sent, locked = self.in_flight.popleft()
        sent.wait()
        cache.release(locked)

    def wait(self):
        while self.in_flight:
            self.landed()


def put_back(backups, namespace):
    """Put ranges back, delete what they lack in their bounds; both counts.

    Each range's query for the keys there now is sent first, and every
    range is on its way before the first answer is read: the scan for
    stale entities runs while the puts do.
    """
    there_now = [entities.send_range(backup.range_kind, namespace,
                                     backup.start, backup.end, keys_only=True)
                 for backup in backups]
    puts, held_by_range = _Puts(), []
    for backup in backups:
        held, chunk, size = set(), [], 0
        for record, reference in records(backup, namespace):
            if chunk and (len(chunk) >= defaults.MAX_REQUEST_ENTITIES
                          or size + len(record) + 4 > _PUT_BYTES):
                puts.send(chunk)
                chunk, size = [], 0
            held.add(entities.sort_key(reference))
            chunk.append((record, reference))
            size += len(record) + 4  # with its framing in the request
        if chunk:
            puts.send(chunk)
        held_by_range.append(held)
    deleted = sum(_delete_stale(query, held)
                  for query, held in zip(there_now, held_by_range))
    puts.wait()
    return puts.count, deleted


def _delete_stale(query, held):
    """Delete what ``query`` finds that is not ``held``, a request at a
    time as it is found; how many."""
    deleted, stale = 0, []
    for reference in entities.read_range(query):
        if entities.sort_key(reference) not in held:
            stale.append(reference)
        if len(stale) == defaults.MAX_REQUEST_ENTITIES:
            deleted += _delete(stale)
            stale = []
    return deleted + _delete(stale)


def _delete(references):
    if references:
        with cache.uncached(references):
            entities.delete(references)
    return len(references)
