"""Reading ranges back, checked, and putting them back in place.

``records`` checks a range as it reads it: its bytes (before the first
record is handed out), each entity's kind, namespace and key bounds, and
its entity count. ``put_back`` puts the ranges of one task back and
deletes what is now stored within their bounds that they lack, up to
``STALE_SCAN`` keys a range; ``delete_stale`` goes on from there. Both
only count, writing nothing, for a dry run (``counting``).
"""
import collections

from google.appengine.ext import db

from ... import cache, defaults, entities
from ...exceptions import RangeCorrupted
from ..backups import backup_bounds, in_order
from ..models import RangeBackup

__all__ = ['records', 'check', 'SentBackups', 'read_backups', 'put_back',
           'delete_stale', 'STALE_SCAN']

#: Bytes of entities per put request at most: the request's own fields
#: need a little of the datastore's 1 MiB.
_PUT_BYTES = defaults.MAX_REQUEST_BYTES - 1024
#: Puts and deletes one task has on their way at once, at most.
_WRITES_IN_FLIGHT = 8
#: Stale keys one delete takes: a few, so that they go while the scan
#: reads on.
_DELETE_KEYS = 100
#: Keys the scan for stale entities of one range reads in one task at
#: most: a range may now hold any number the snapshot lacks; the scan goes
#: on in a task of its own from where it stopped (``delete_stale``).
STALE_SCAN = 10000
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


class _Writes:
    """Puts and deletes on their way, ``_WRITES_IN_FLIGHT`` at most: the
    task waits for the datastore once for many calls, not once a call."""

    def __init__(self):
        self.in_flight = collections.deque()
        self.counts = {'put': 0, 'deleted': 0}

    def _send(self, sent, then):
        """``sent`` is on its way; ``then`` takes what it answers."""
        self.in_flight.append((sent, then))
        if len(self.in_flight) > _WRITES_IN_FLIGHT:
            self.landed()

    def send_put(self, chunk):
        locked = cache.lock([reference for _, reference in chunk])
        self._send(entities.SentPut([record for record, _ in chunk]),
                   lambda _: cache.release(locked))
        self.counts['put'] += len(chunk)

    def send_delete(self, references):
        locked = cache.lock(references)
        self._send(entities.SentDelete(references),
                   lambda _: cache.release(locked))
        self.counts['deleted'] += len(references)

    def landed(self):
        sent, then = self.in_flight.popleft()
        then(sent.wait())

    def wait(self):
        while self.in_flight:
            self.landed()


class _Counts(_Writes):
    """What ``_Writes`` would do, counted and not done (a dry run's): each
    chunk is compared byte for byte with what is stored under its keys
    now (``_WRITES_IN_FLIGHT`` reads on their way), stale keys counted."""

    def __init__(self):
        super().__init__()
        self.counts = {'created': 0, 'changed': 0, 'deleted': 0}

    def send_put(self, chunk):
        self._send(entities.SentGet([reference for _, reference in chunk]),
                   lambda now: self._compare(chunk, now))

    def send_delete(self, references):
        self.counts['deleted'] += len(references)

    def _compare(self, chunk, now):
        for (stored, _), found in zip(chunk, now):
            if found is None:
                self.counts['created'] += 1
            elif found.SerializeToString() != stored:
                self.counts['changed'] += 1


def put_back(backups, namespace, counting=False):
    """Put ranges back, delete what they lack in their bounds; or with
    ``counting`` (a dry run), only count what that would create, change
    and delete.

    Each range's query for the keys there now is sent first, and every
    range is on its way before the first answer is read: the scan for
    stale entities runs while the puts do. Returns the counts (``put`` and
    ``deleted``, or ``created``, ``changed`` and ``deleted``) and where
    the scans stopped (``delete_stale``).
    """
    there_now = [entities.send_range(backup.range_kind, namespace,
                                     backup.start, backup.end, keys_only=True)
                 for backup in backups]
    writes, held_by_range = _Counts() if counting else _Writes(), []
    for backup in backups:
        held, chunk, size = set(), [], 0
        for record, reference in records(backup, namespace):
            if chunk and (len(chunk) >= defaults.MAX_REQUEST_ENTITIES
                          or size + len(record) + 4 > _PUT_BYTES):
                writes.send_put(chunk)
                chunk, size = [], 0
            held.add(entities.sort_key(reference))
            chunk.append((record, reference))
            size += len(record) + 4  # with its framing in the request
        if chunk:
            writes.send_put(chunk)
        held_by_range.append(held)
    stops = _scan(enumerate(zip(there_now, held_by_range)), writes)
    writes.wait()
    return writes.counts, stops


def delete_stale(backups, namespace, stops, counting=False):
    """Go on with the scans for stale entities (stored within a range's
    bounds, not in the range) from ``stops`` (``[[position of the range in
    backups, key], ...]``: from each key to its range's end, that key read
    before); delete them, or only count them (``counting``, a dry run).
    Returns how many, and where the scans stopped."""
    writes, scans = _Counts() if counting else _Writes(), []
    for position, key in stops:
        backup = backups[position]
        held = {entities.sort_key(reference)
                for _, reference in records(backup, namespace)}
        held.add(entities.sort_key(key._ToPb()))  # read before: not again
        scans.append((position, (
            entities.send_range(backup.range_kind, namespace, key,
                                backup.end, keys_only=True), held)))
    stops = _scan(scans, writes)
    writes.wait()
    return writes.counts['deleted'], stops


def _scan(scans, writes):
    """Delete (or count) through ``writes`` what each ``(position, (query,
    held))`` finds that is not ``held``, ``_DELETE_KEYS`` a request as it
    is found. Returns where a scan stopped after ``STALE_SCAN`` keys:
    ``[position, key]`` of the last it read."""
    stops = []
    for position, (query, held) in scans:
        stale, read = [], 0
        for reference in entities.read_range(query):
            if entities.sort_key(reference) not in held:
                stale.append(reference)
            if len(stale) == _DELETE_KEYS:
                writes.send_delete(stale)
                stale = []
            read += 1
            if read == STALE_SCAN:
                stops.append([position, entities.key(reference)])
                break
        if stale:
            writes.send_delete(stale)
    return stops
