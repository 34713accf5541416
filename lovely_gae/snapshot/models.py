"""The stored shape of a snapshot: ``Snapshot``, ``RangeBackup`` and its parts."""
import enum
import hashlib
import itertools
import re

from google.appengine.ext import db

from .. import batch, completion, defaults, entities
from ..base import (JsonProperty, KeyProperty, LibraryModel, bit_is_set,
                    done_bits, get_all, prefixed, set_bit)
from ..exceptions import (RangeCorrupted, SnapshotIncomplete,
                          SnapshotNotFinished)
from ..serializers import default_serializer
from . import storage

__all__ = ['Status', 'Snapshot', 'RangeBackup', 'RangeBackupPart',
           'RestoreStatus', 'Restore', 'check_complete', 'backup_keys',
           'iter_backups']


_RANGE_NAME = re.compile(r'(\d{10}):\d+')


class Status(str, enum.Enum):
    STARTED = 'started'
    STORING = 'storing'
    FINISHED = 'finished'
    ERROR = 'error'
    DELETING = 'deleting'


class _ReverseReference(db._ReverseReferenceProperty):
    """``snapshot.rangebackup_set``, queried in the snapshot's namespace."""

    def __get__(self, model_instance, model_class):
        if model_instance is None:
            return self
        query = db.Query(self._model,
                         namespace=model_instance.key().namespace())
        return query.filter(self._prop_name + ' =', model_instance.key())


class _SnapshotReference(db.ReferenceProperty):
    def __property_config__(self, model_class, property_name):
        super().__property_config__(model_class, property_name)
        setattr(self.reference_class, self.collection_name,
                _ReverseReference(model_class, property_name))


def check_complete(snapshot_id, range_counts, ranges):
    """Raise ``SnapshotIncomplete`` unless ``ranges`` (``(kind, position)``
    of each) are positions ``0 .. n - 1`` of each kind, each once, ``n``
    from ``range_counts`` (``{kind: n}``)."""
    positions = {kind: [] for kind in range_counts}
    for kind, position in ranges:
        if kind not in positions:
            raise SnapshotIncomplete(snapshot_id, 'it has a range of kind %r '
                                     'it does not hold' % (kind,))
        positions[kind].append(position)
    for kind, count in range_counts.items():
        found = sorted(positions[kind])
        if count is None or found != list(range(len(found))) or len(
                found) != count:
            raise SnapshotIncomplete(snapshot_id, _missing(kind, found,
                                                           count))


def _missing(kind, found, count, first=0):
    """What is wrong with the positions ``found`` of ``kind``, which should
    be ``first`` to ``first + count - 1`` (the kind's own when ``first`` is
    0), once each."""
    if count is None:
        return 'the ranges of kind %r are not known' % kind
    have = set(found)
    wanted = range(first, first + count)
    if len(have) != len(found) or len(found) > count:
        return 'kind %r has %d ranges, it recorded %d' % (kind, len(found),
                                                          count)
    # The first few missing: ``count`` may be large, the ranges found not.
    missing = list(itertools.islice(
        (position for position in wanted if position not in have), 5))
    lacking = count - sum(1 for position in have if position in wanted)
    which = ('of its %d ranges' % count if not first else
             'of its ranges %d to %d' % (first, first + count - 1))
    return 'kind %r lacks %d %s (positions %s%s)' % (
        kind, lacking, which, ', '.join(map(str, missing)),
        ', ...' if lacking > len(missing) else '')


def backup_keys(snapshot_id, kind, first, count):
    """Keys of the range backups ``first`` to ``first + count - 1`` of
    ``kind``; ``RangeCorrupted`` names the first one that is not there
    exactly once."""
    prefix = 'RB:%d:%s:' % (snapshot_id, kind)
    query = RangeBackup.all(keys_only=True).filter(
        '__key__ >=', RangeBackup.key_for('%s%010d:' % (prefix, first))).filter(
        '__key__ <', RangeBackup.key_for('%s%010d:' % (prefix, first + count)))
    keys, positions = [], []
    for key in query.run(batch_size=1000):
        # A name prefix can be another kind's (kind ``A`` and
        # ``A:0000000001``): only names that end in position:size count.
        match = _RANGE_NAME.fullmatch(key.name()[len(prefix):])
        if match:
            keys.append(key)
            positions.append(int(match.group(1)))
    if positions != list(range(first, first + count)):
        raise SnapshotIncomplete(snapshot_id, _missing(kind, positions, count,
                                                       first))
    return keys


def iter_backups(snapshot_id, keys, max_ranges=100, max_bytes=8 << 20):
    """The range backups of ``keys`` in order, a batch get at a time:
    ``max_ranges`` of them, or ``max_bytes`` of their first parts (their
    names hold their sizes; a first part holds ``PART_SIZE`` at most)."""
    done = 0
    while done < len(keys):
        wanted, held = [], 0
        for key in keys[done:]:
            held += min(int(key.name().rsplit(':', 1)[1]), defaults.PART_SIZE)
            if wanted and (len(wanted) == max_ranges or held > max_bytes):
                break
            wanted.append(key)
        for key, backup in zip(wanted, get_all(wanted)):
            if backup is None:
                raise RangeCorrupted(snapshot_id, key.name(),
                                     'range backup is missing')
            yield backup
        done += len(wanted)


class Snapshot(LibraryModel):
    """A snapshot of some kinds of one namespace, stored range by range.

    Progress is counted here, in transactions: ``done`` keeps a bit per
    range and kind, so a range counted once is never counted again.
    """

    STATUS_STARTED = Status.STARTED.value
    STATUS_STORING = Status.STORING.value
    STATUS_FINISHED = Status.FINISHED.value
    STATUS_ERROR = Status.ERROR.value
    STATUS_DELETING = Status.DELETING.value

    status = db.StringProperty(default=STATUS_STARTED)
    kinds = db.StringListProperty(indexed=False)
    namespace = db.StringProperty(default='', indexed=False)
    batchsize = db.IntegerProperty(default=defaults.BATCH_SIZE,
                                   indexed=False)
    codec = db.StringProperty(default=defaults.CODEC, indexed=False)
    # The markers of snapshots written before ``SnapshotMarkers``, read only.
    markers_json = db.TextProperty(name='markers')
    # {kind: number of ranges}, known once the kind's markers are.
    range_counts = JsonProperty()
    # {kind: token} of the markers pass whose markers count, and whose
    # staged ranges, key lists (``RangeKeys``) and ``SnapshotMarkers`` go.
    key_lists = JsonProperty()
    done = JsonProperty()
    finished_kinds = db.StringListProperty(indexed=False)
    entity_count = db.IntegerProperty(default=0, indexed=False)
    stored_bytes = db.IntegerProperty(default=0, indexed=False)
    error = db.TextProperty()
    created = db.DateTimeProperty(auto_now_add=True)
    modified = db.DateTimeProperty(auto_now=True, indexed=False)
    # The latest restore of this snapshot (a ``Restore``'s key name).
    restore_id = db.StringProperty(indexed=False)

    @property
    def id(self):
        return self.key().id()

    @property
    def markers(self):
        """``{kind: [marker key, ...]}`` of the kinds whose markers are known.

        Read from ``SnapshotMarkers`` when first asked for, then kept.
        """
        result = {}
        for kind in self.kinds:
            markers = self.kind_markers(kind)
            if markers is not None:
                result[kind] = markers
        return result

    def _old_markers(self):
        """The markers of snapshots written before ``SnapshotMarkers``."""
        return default_serializer.loads(self.markers_json) if (
            self.markers_json) else {}

    def kind_markers(self, kind):
        """The markers of ``kind``, None before they are known; one read."""
        from .keylists import SnapshotMarkers
        count = self.range_counts.get(kind)
        if count is None:
            return self._old_markers().get(kind)
        old = self._old_markers()
        if kind in old:
            return old[kind]
        cache = self.__dict__.setdefault('_markers_cache', {})
        prefix = SnapshotMarkers.prefix(self.id, kind,
                                        self.key_lists.get(kind))
        if (prefix, count) not in cache:
            markers = SnapshotMarkers.load(prefix, count - 1)
            if markers is None:
                raise RangeCorrupted(self.id, prefix, 'markers are missing')
            cache[prefix, count] = markers
        return cache[prefix, count]

    def range_count(self, kind):
        """Ranges of ``kind`` (None before its markers are known)."""
        if kind in self.range_counts:
            return self.range_counts[kind]
        markers = self._old_markers().get(kind)  # before range_counts
        return None if markers is None else len(markers) + 1

    def ranges(self, kind):
        """``[(start, end), ...]`` of ``kind``, once its markers are known."""
        return batch.ranges(self.kind_markers(kind))

    def ranges_total(self, kinds=None):
        kinds = self.kinds if kinds is None else kinds
        counts = [self.range_count(kind) for kind in kinds]
        return None if None in counts else sum(counts)

    @staticmethod
    def _count(done):
        return sum(bin(done_bits(h)).count('1') for h in done.values())

    def progress(self):
        """What a status page shows: ranges done and total, entities, bytes."""
        return {'ranges_done': self._count(self.done),
                'ranges_total': self.ranges_total(),
                'entities': self.entity_count, 'bytes': self.stored_bytes}

    def to_dict(self):
        """The snapshot as JSON-ready data (what the app and the CLI show)."""
        def iso(value):
            return value.isoformat() + 'Z' if value else None
        return {'id': self.id, 'status': self.status, 'kinds': self.kinds,
                'namespace': self.namespace, 'batchsize': self.batchsize,
                'codec': self.codec, 'progress': self.progress(),
                'range_counts': {kind: self.range_count(kind)
                                 for kind in self.kinds},
                'error': self.error, 'created': iso(self.created),
                'modified': iso(self.modified),
                'restore': self.restore_progress()}

    def restore_progress(self):
        """The latest restore's ``Restore.to_dict()``, or None."""
        if not self.restore_id:
            return None
        found = db.get(Restore.key_for(self.restore_id))
        return None if found is None else found.to_dict()

    def is_done(self, kind, position, done=None):
        return bit_is_set(self.done if done is None else done, kind,
                          position)

    def mark_done(self, kind, position, done=None):
        """Set the bit of a range; True when all ranges of ``kind`` are done."""
        bits = set_bit(self.done if done is None else done, kind, position)
        return bits == (1 << self.range_count(kind)) - 1

    def check_finished(self):
        if self.status != self.STATUS_FINISHED:
            raise SnapshotNotFinished(self.id, self.status)

    def _backup_prefix(self, kind):
        return 'RB:%d:%s' % (self.id, '' if kind is None else kind + ':')

    def range_backups(self, kind=None):
        """This snapshot's range backups in key order, of one kind or all."""
        return list(self.iter_range_backups(kind))

    def iter_range_backups(self, kind=None):
        """``range_backups``, read a query batch at a time."""
        return (rb for rb in prefixed(RangeBackup, self._backup_prefix(kind))
                if kind is None or rb.range_kind == kind)

    def range_backup_keys(self, kind=None, first=0, count=None):
        """Keys of the range backups of ``kind`` (of every kind, in key
        order, when None), from position ``first`` on (``count`` of them;
        default: the rest), data unread.

        Each must be there exactly once, as the snapshot counted its ranges,
        else ``RangeCorrupted`` names the first one missing.
        """
        if kind is None:
            return [key for name in sorted(self.kinds)
                    for key in self.range_backup_keys(name)]
        if count is None:
            count = self.range_count(kind) - first
        return backup_keys(self.id, kind, first, count)

    def range_backup(self, kind, position):
        """The stored range, or None; a name prefix can be another kind's."""
        prefix = RangeBackup.prefix(self.id, kind, position)
        for rb in prefixed(RangeBackup, prefix):
            if rb.range_kind == kind and rb.position == position:
                return rb
        return None

    def restore(self, kinds=None, dry_run=False):
        """Put the snapshot's kinds back exactly as they were.

        Entities of those kinds that are not in the snapshot are deleted.
        Runs as tasks; with ``dry_run`` nothing is written and the result is
        ``{kind: {'created': n, 'changed': n, 'deleted': n}}``.
        """
        from . import restore
        return restore.restore(self, kinds, dry_run)

    def verify(self):
        """Re-read every stored range; return ``[(range name, reason), ...]``."""
        problems = []
        for rb in self.iter_range_backups():
            try:
                rb.check()
            except RangeCorrupted as exc:
                problems.append((rb.name, exc.reason))
        return problems

    def delete(self):
        """Delete the snapshot and every stored part of it.

        Not while a restore of it runs (``SnapshotInUse``): it would stop
        half-way. From the moment it is marked ``deleting``, no restore and
        no download of it can start.
        """
        from . import ranges, restore
        restore.mark_deleting(self.id)
        restore.forget(self.id)
        ranges.delete_snapshot(self)


class RangeBackup(LibraryModel):
    """The stored entities of one range of one kind.

    Its key name is ``RB:<snapshot id>:<kind>:<position>:<stored size>``.
    The stored bytes are ``data`` followed by ``parts - 1`` parts in
    ``RangeBackupPart`` entities.
    """

    snapshot = _SnapshotReference(Snapshot, collection_name='rangebackup_set')
    range_kind = db.StringProperty(indexed=False)
    position = db.IntegerProperty(indexed=False)
    start = KeyProperty()
    end = KeyProperty()
    count = db.IntegerProperty(indexed=False)
    # Bytes of the records before compression: a reader decompresses no more.
    raw_size = db.IntegerProperty(indexed=False)
    size = db.IntegerProperty(indexed=False)
    sha256 = db.StringProperty(indexed=False)
    format = db.StringProperty(default=storage.FORMAT, indexed=False)
    codec = db.StringProperty(default='bz2', indexed=False)
    parts = db.IntegerProperty(default=1, indexed=False)
    # Length of every part but the last (None: written before it was kept).
    part_size = db.IntegerProperty(indexed=False)
    token = db.StringProperty(indexed=False)
    data = db.BlobProperty()

    @staticmethod
    def prefix(snapshot_id, kind, position):
        return 'RB:%d:%s:%010d:' % (snapshot_id, kind, position)

    @classmethod
    def make_name(cls, snapshot_id, kind, position, size):
        return '%s%d' % (cls.prefix(snapshot_id, kind, position), size)

    @staticmethod
    def staging_name(snapshot_id, kind, position, token):
        """A range stored by the markers pass, until its task commits it.

        ``RBS:`` sorts outside every ``RB:<id>:`` prefix, and a staged range
        has no ``snapshot``: no listing of a snapshot's ranges sees it.
        """
        return 'RBS:%d:%s:%010d:%s' % (snapshot_id, kind, position, token)

    @property
    def name(self):
        return self.key().name()

    def part_key(self, index):
        """The key of part ``index``, of a staged range or a committed one."""
        range_prefix = 'RB:' + self.name.split(':', 1)[1].rsplit(':', 1)[0]
        return RangeBackupPart.key_for(
            RangeBackupPart.make_name(range_prefix, self.token, index))

    def iter_parts(self, verify=True):
        """Yield the stored parts; with ``verify``, only after they check out.

        A single part is checked before it is handed out; several parts are
        read twice, so that nothing of a damaged range is ever used.
        """
        if verify and self.parts > 1:
            self._check_parts(self._read_parts())
        elif verify:
            self._check_parts([self.data or b''])
        return self._read_parts()

    def read_part(self, index):
        """The stored bytes of part ``index`` (0 is kept in ``data``)."""
        if index == 0:
            return self.data or b''
        part = db.get(self.part_key(index))
        if part is None:
            raise RangeCorrupted(self.snapshot_id, self.name,
                                 'part %d is missing' % index)
        return part.data

    def _read_parts(self):
        for index in range(max(self.parts, 1)):
            yield self.read_part(index)

    def _check_parts(self, parts):
        digest = hashlib.sha256()
        size = 0
        for part in parts:
            digest.update(part)
            size += len(part)
        if size != self.size or digest.hexdigest() != self.sha256:
            raise RangeCorrupted(self.snapshot_id, self.name,
                                 'stored bytes do not match their sha256')

    @property
    def snapshot_id(self):
        return RangeBackup.snapshot.get_value_for_datastore(self).id()

    def iter_entities(self, verify=True):
        """Yield the range's entities as ``EntityProto`` messages."""
        for record in self.iter_records(verify):
            yield entities.EntityProto.FromString(record)

    def iter_records(self, verify=True):
        return storage.iter_records(self.iter_parts(verify),
                                    self.codec or 'bz2', self.raw_size)

    def keys(self):
        """The keys this range holds, as ``db.Key`` objects."""
        return [entities.key(e.key) for e in self.iter_entities()]

    def check(self):
        """Raise ``RangeCorrupted`` unless bytes and entity count match."""
        try:
            count = sum(1 for _ in self.iter_records(verify=True))
        except RangeCorrupted:
            raise
        except Exception as exc:
            raise RangeCorrupted(self.snapshot_id, self.name,
                                 'cannot decode: %s' % exc) from exc
        if count != self.count:
            raise RangeCorrupted(
                self.snapshot_id, self.name,
                'holds %d entities, %d were stored' % (count, self.count))


class RangeBackupPart(LibraryModel):
    """A further part of a range too large for one entity."""

    data = db.BlobProperty()

    @staticmethod
    def make_name(range_prefix, token, index):
        # The prefix is the range backup's name without its size, so the
        # parts of a snapshot share the prefix ``RBP:<snapshot id>:``.
        return 'RBP%s:%s:%04d' % (range_prefix[2:], token, index)



class RestoreStatus(str, enum.Enum):
    CHECKING = 'checking'
    RUNNING = 'running'
    FINISHED = 'finished'
    ERROR = 'error'


class Restore(LibraryModel):
    """One restore of some kinds of a snapshot (key name: its id).

    It checks every range first (``checking``), then puts them back
    (``running``); its tasks' ``completion`` jobs count what is done.
    """

    snapshot_id = db.IntegerProperty()  # to find them when it is deleted
    namespace = db.StringProperty(indexed=False)
    kinds = db.StringListProperty(indexed=False)
    # Ranges per kind, in the order of ``kinds``.
    totals = db.ListProperty(int, indexed=False)
    # Ranges one writing task puts back at most.
    per_task = db.IntegerProperty(default=1, indexed=False)
    status = db.StringProperty(default=RestoreStatus.CHECKING.value,
                               indexed=False)
    error = db.TextProperty()
    entities = db.IntegerProperty(default=0, indexed=False)
    deleted = db.IntegerProperty(default=0, indexed=False)
    created = db.DateTimeProperty(auto_now_add=True, indexed=False)
    finished = db.DateTimeProperty(indexed=False)

    @classmethod
    def kind(cls):
        return 'LovelyGaeRestore'

    @property
    def id(self):
        return self.key().name()

    def job(self, phase):
        """The ``completion`` job of a phase: ``check`` or ``write``."""
        return 'R:%s:%s' % (self.id, phase)

    def ranges_total(self):
        return sum(self.totals)

    def ranges_done(self):
        if self.status == RestoreStatus.FINISHED.value:
            return self.ranges_total()
        if self.status == RestoreStatus.CHECKING.value:
            return 0
        return completion.tally(self.job('write')).get('ranges', 0)

    def to_dict(self):
        return {'id': self.id, 'status': self.status, 'kinds': self.kinds,
                'ranges_done': self.ranges_done(),
                'ranges_total': self.ranges_total(),
                'entities': self.entities, 'deleted': self.deleted,
                'error': self.error}
