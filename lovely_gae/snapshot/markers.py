"""How a snapshot cut its kinds: a large kind's shards (``KindShards``)
and the first keys of each chunk of ranges (``SnapshotMarkers``)."""
from google.appengine.ext import db

from ..base import KeyProperty, LibraryModel, prefixed
from ..serializers import default_serializer
from . import names

__all__ = ['KindShards', 'SnapshotMarkers']


class KindShards(LibraryModel):
    """Where the shards of a kind start, as its first task cut it, or that
    it is small (``SS:<snapshot id>:<kind>``)."""

    starts = db.TextProperty()  # JSON: the shards' first keys (None: open)

    @classmethod
    def build(cls, snapshot_id, kind, starts):
        """``starts``: the shards' first keys; None for a small kind."""
        return cls(key_name=names.shards_name(snapshot_id, kind),
                   starts=db.Text(default_serializer.dumps(
                       None if starts is None else list(starts))))

    def keys(self):
        return default_serializer.loads(self.starts)


class SnapshotMarkers(LibraryModel):
    """The first keys of a chunk of a kind's ranges, as its key pass found
    them (``SM:<snapshot id>:<kind>:<shard>:<chunk>``), and where the next
    chunk starts (``after``; the shard's end after its last chunk)."""

    range_kind = db.StringProperty(indexed=False)
    first = db.IntegerProperty(indexed=False)  # its first range's position
    starts = db.TextProperty()  # JSON: the ranges' first keys (None: open)
    after = KeyProperty()

    @staticmethod
    def make_name(snapshot_id, kind, shard, chunk):
        return names.markers_name(snapshot_id, kind, shard, chunk)

    @classmethod
    def build(cls, snapshot_id, kind, shard, chunk, first, starts, after):
        return cls(key_name=cls.make_name(snapshot_id, kind, shard, chunk),
                   range_kind=kind, first=first, after=after,
                   starts=db.Text(default_serializer.dumps(list(starts))))

    def all_starts(self):
        """The ranges' first keys, None for an open start."""
        return default_serializer.loads(self.starts)

    @classmethod
    def of(cls, snapshot_id):
        """The snapshot's chunks of markers, in key order."""
        return prefixed(cls, names.of_snapshot(names.MARKERS, snapshot_id))

    def keys(self):
        return [start for start in default_serializer.loads(self.starts)
                if start is not None]
