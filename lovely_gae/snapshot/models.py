"""The stored shape of a snapshot: ``Snapshot``, ``RangeBackup`` and its
parts (how its kinds were cut: ``markers``; finding its ranges:
``backups``; its restores: ``restores``)."""
import hashlib
import importlib

from google.appengine.ext import db

from .. import defaults
from ..base import JsonProperty, KeyProperty, LibraryModel, prefixed
from ..exceptions import RangeCorrupted, SnapshotNotFinished
from . import names, storage
from .markers import ShardProgress, SnapshotMarkers
from .restores import Restore, begun_key
from .statuses import Status

__all__ = ['SHARD_STRIDE', 'ACTIONS', 'Status', 'Snapshot', 'RangeBackup',
           'RangeBackupPart']


#: Positions of a shard's ranges: shard ``s`` numbers its ranges from
#: ``s * SHARD_STRIDE`` on, so ranges sort by position in key order while
#: the shards' key passes run at once (10 digits: 999 shards).
SHARD_STRIDE = 10 ** 7

#: The work ``Snapshot.restore`` and ``Snapshot.delete`` start: ``restore``,
#: ``dry_run`` (each a function of the snapshot and the kinds that returns
#: the id of the ``Restore`` it started) and ``delete``. The modules that
#: do it build on this one and enter themselves here (``restore``, ``plan``,
#: ``deleting``), so that the stored model imports nothing above it; ``api``
#: imports them (``api.TASK_MODULES``), on first use if no one has.
ACTIONS = {}


def _action(name):
    """``ACTIONS[name]``: a caller that read a snapshot through this module
    alone has not imported the work yet (``api`` does)."""
    if name not in ACTIONS:
        importlib.import_module(__package__ + '.api')
    return ACTIONS[name]


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


class Snapshot(LibraryModel):
    """A snapshot of some kinds of one namespace, stored range by range.

    Its tasks never write it while they store ranges: each counts what it
    stored in a marker of its own (``completion``), and the snapshot learns
    the totals when the last range is in (``finish``).
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
    # {kind: [ranges of shard 0, of shard 1, ...]}, once it has finished.
    range_counts = JsonProperty()
    # {kind: entities}, once it has finished.
    kind_entities = JsonProperty()
    entity_count = db.IntegerProperty(default=0, indexed=False)
    stored_bytes = db.IntegerProperty(default=0, indexed=False)
    error = db.TextProperty()
    created = db.DateTimeProperty(auto_now_add=True)
    modified = db.DateTimeProperty(auto_now=True, indexed=False)
    # The latest restore of this snapshot (a ``Restore``'s key name).
    restore_id = db.StringProperty(indexed=False)
    # The latest dry run of a restore of it (a ``Restore``'s key name).
    plan_id = db.StringProperty(indexed=False)

    def __repr__(self):
        # The seed's doctest shows ``<...Snapshot object at ...>``: kept,
        # with what the snapshot is after it.
        return '<%s.Snapshot object at %#x: %s %s ns=%r kinds=%s>' % (
            __name__, id(self), self.id if self.is_saved() else '(unsaved)',
            self.status, self.namespace, ','.join(self.kinds))

    @property
    def id(self):
        return self.key().id()

    @property
    def markers(self):
        """``{kind: [marker key, ...]}`` of the kinds whose markers are known
        (as far as a kind's key passes got): the first key of each range
        but the first, in key order."""
        found = {}
        for chunk in SnapshotMarkers.of(self.id):
            found.setdefault(chunk.range_kind, []).extend(chunk.keys())
        return {kind: found[kind] for kind in self.kinds if kind in found}

    def spans(self, kind):
        """``[(first position, ranges), ...]`` of ``kind``, a span a shard
        (see ``passes``); None before the snapshot has finished."""
        counts = self.range_counts.get(kind)
        if counts is None:
            return None
        return [(shard * SHARD_STRIDE, count)
                for shard, count in enumerate(counts)]

    def range_count(self, kind):
        """Ranges of ``kind`` (None before the snapshot has finished)."""
        counts = self.range_counts.get(kind)
        return None if counts is None else sum(counts)

    def ranges_total(self):
        counts = [self.range_count(kind) for kind in self.kinds]
        return None if None in counts else sum(counts)

    def progress(self):
        """What a status page shows: ranges done and total, entities, bytes,
        and ranges done and total of each kind (``by_kind``).

        While it is storing, the ranges done are read as ``_stored_ranges``
        counts them: not a key a range.
        """
        by_kind = {kind: {'ranges_done': self.range_count(kind),
                          'ranges_total': self.range_count(kind)}
                   for kind in self.kinds}
        if self.status != self.STATUS_FINISHED:
            for kind, done in _stored_ranges(self.id, self.kinds).items():
                by_kind[kind]['ranges_done'] = done
        return {'ranges_done': sum(counts['ranges_done']
                                   for counts in by_kind.values()),
                'ranges_total': self.ranges_total(),
                'entities': self.entity_count, 'bytes': self.stored_bytes,
                'by_kind': by_kind}

    def to_dict(self, restores=None):
        """The snapshot as JSON-ready data (what the app and the CLI show).
        ``restores``: its latest restore's and dry run's ``Restore.to_dict``
        by id, as ``to_dicts`` reads them for many at once."""
        if restores is None:
            restores = _restore_dicts([self])

        def iso(value):
            return value.isoformat() + 'Z' if value else None
        return {'id': self.id, 'status': self.status, 'kinds': self.kinds,
                'namespace': self.namespace, 'batchsize': self.batchsize,
                'codec': self.codec, 'progress': self.progress(),
                'range_counts': {kind: self.range_count(kind)
                                 for kind in self.kinds},
                'range_spans': {kind: self.spans(kind)
                                for kind in self.kinds},
                'kind_entities': {kind: self.kind_entities.get(kind)
                                  for kind in self.kinds},
                'error': self.error, 'created': iso(self.created),
                'modified': iso(self.modified),
                'restore': restores.get(self.restore_id),
                'plan': restores.get(self.plan_id)}

    @staticmethod
    def to_dicts(snaps):
        """``to_dict`` of each of ``snaps``, their restores and dry runs
        read in one call for all (a listing's page is not a call a
        snapshot)."""
        restores = _restore_dicts(snaps)
        return [snap.to_dict(restores) for snap in snaps]

    def restore_progress(self):
        """``restore_id``'s ``Restore.to_dict()``, or None: the latest
        restore as this snapshot was read, or the one ``restore`` started
        on it."""
        return _restore_dicts([self], 'restore_id').get(self.restore_id)

    def plan_progress(self):
        """``plan_id``'s ``Restore.to_dict()`` (with its ``plan`` once
        finished), or None: the latest dry run as this snapshot was read,
        or the one ``restore(dry_run=True)`` started on it."""
        return _restore_dicts([self], 'plan_id').get(self.plan_id)

    def check_finished(self):
        if self.status != self.STATUS_FINISHED:
            raise SnapshotNotFinished(self.id, self.status)

    def range_backups(self, kind=None):
        """This snapshot's range backups in key order, of one kind or all."""
        return list(self.iter_range_backups(kind))

    def iter_range_backups(self, kind=None):
        """``range_backups``, read a query batch at a time."""
        return (rb for rb in prefixed(RangeBackup,
                                      names.range_prefix(self.id, kind))
                if kind is None or rb.range_kind == kind)

    def restore(self, kinds=None, dry_run=False):
        """Put the snapshot's kinds back exactly as they were.

        Entities of those kinds that are not in the snapshot are deleted.
        Runs as tasks (see ``restore_progress``). With ``dry_run`` nothing
        is written: the tasks count what a restore would do, per kind, and
        ``plan_progress()['plan']`` has it once they are done.

        Afterwards ``restore_id`` (with ``dry_run``: ``plan_id``) names the
        restore started, as its start stored it on the snapshot: another
        caller may start one of other kinds before this one has ended.
        """
        started = _action('dry_run' if dry_run else 'restore')(self, kinds)
        if dry_run:
            self.plan_id = started
        else:
            self.restore_id = started

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
        _action('delete')(self)


def _stored_ranges(snapshot_id, kinds):
    """``{kind: ranges stored so far}`` of a snapshot that is storing: a
    large kind's from its shards' ``ShardProgress`` (one small entity a
    shard, read in one query for all kinds), the others' counted by their
    names. Those are small (a kind with as many keys sampled as
    ``passes.SAMPLE`` is cut into shards), or have stored nothing yet: a
    shard's progress commits with its ranges."""
    done = dict.fromkeys(kinds, 0)
    sharded = set()
    for shard in ShardProgress.of(snapshot_id):
        if shard.range_kind in done:
            done[shard.range_kind] += shard.ranges
            sharded.add(shard.range_kind)
    prefixes = {kind: names.range_prefix(snapshot_id, kind)
                for kind in kinds if kind not in sharded}
    found = {kind: prefixed(RangeBackup, prefix, keys_only=True)
             for kind, prefix in prefixes.items()}  # on their way at once
    for kind, keys in found.items():
        done[kind] = sum(  # not those of kind ``<kind>:...``
            names.range_position(key.name(), prefixes[kind]) is not None
            for key in keys)
    return done


def _restore_dicts(snaps, *which):
    """``{id: Restore.to_dict()}`` of the latest restores and dry runs of
    ``snaps`` (``which``: ``restore_id``, ``plan_id``, or both) that are
    there, each read with the marker of its writing: one call for all."""
    wanted = [(snap.id, getattr(snap, name)) for snap in snaps
              for name in which or ('restore_id', 'plan_id')
              if getattr(snap, name)]
    found = db.get([key for snapshot_id, restore_id in wanted
                    for key in (Restore.key_for(restore_id),
                                begun_key(snapshot_id, restore_id))])
    return {record.id: record.to_dict(begun is not None)
            for record, begun in zip(found[::2], found[1::2]) if record}


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
    codec = db.StringProperty(indexed=False)
    parts = db.IntegerProperty(default=1, indexed=False)
    # Length of every part but the last.
    part_size = db.IntegerProperty(indexed=False)
    # Names the further parts: each storing of the range has its own.
    token = db.StringProperty(indexed=False)
    data = db.BlobProperty()

    @staticmethod
    def make_name(snapshot_id, kind, position, size):
        return names.range_name(snapshot_id, kind, position, size)

    @property
    def name(self):
        return self.key().name()

    def part_key(self, index):
        """The key of part ``index`` (1 and on; 0 is ``data``)."""
        return RangeBackupPart.key_of(self.snapshot_id, self.range_kind,
                                      self.position, self.token, index)

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
        for index in range(self.parts):
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

    def iter_records(self, verify=True):
        return storage.iter_records(self.iter_parts(verify), self.codec,
                                    self.raw_size)

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

    @classmethod
    def key_of(cls, snapshot_id, kind, position, token, index):
        return cls.key_for(names.part_name(snapshot_id, kind, position,
                                           token, index))
