"""How a snapshot cut its kinds: a large kind's shards (``KindShards``),
the first keys of each chunk of ranges (``SnapshotMarkers``), and how far
each shard has got (``ShardProgress``)."""
from google.appengine.ext import db

from ..base import KeyProperty, LibraryModel, prefixed
from ..serializers import default_serializer
from . import names

__all__ = ['KindShards', 'SnapshotMarkers', 'ShardProgress']


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

    @classmethod
    def build(cls, snapshot_id, kind, shard, chunk, first, starts, after):
        return cls(key_name=names.markers_name(snapshot_id, kind, shard,
                                               chunk),
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


class ShardProgress(LibraryModel):
    """The ranges a shard of a large kind has stored so far
    (``SP:<snapshot id>:<kind>:<shard>``), written with each commit of its
    ranges: a snapshot that is storing shows its progress by reading one
    of these a shard, not a key a range. Only the shard's own tasks write
    it, one after the other."""

    range_kind = db.StringProperty(indexed=False)
    ranges = db.IntegerProperty(indexed=False)

    @classmethod
    def build(cls, snapshot_id, kind, shard, ranges):
        return cls(key_name=names.progress_name(snapshot_id, kind, shard),
                   range_kind=kind, ranges=ranges)

    @classmethod
    def of(cls, snapshot_id):
        """The snapshot's shards that have stored ranges."""
        return prefixed(cls, names.of_snapshot(names.PROGRESS, snapshot_id))
