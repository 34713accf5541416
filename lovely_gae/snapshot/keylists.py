"""Lists a snapshot keeps apart: each range's keys, each kind's markers."""
from google.appengine.ext import db

from .. import entities
from ..batch import MarkerList, pass_name
from ..base import LibraryModel, get_all
from . import storage

__all__ = ['RangeKeys', 'SnapshotMarkers']


class RangeKeys(LibraryModel):
    """The keys of one range, as its markers task found them, in key order.

    The range's task reads its entities by these keys: a batch get costs
    the range, where a range query may cost the whole kind. Stored like a
    range (``storage.FORMAT``, zlib), in ``parts`` entities when large; the
    first part says how many there are.
    """

    CODEC = 'zlib'

    data = db.BlobProperty()
    parts = db.IntegerProperty(default=1, indexed=False)

    @staticmethod
    def make_name(snapshot_id, kind, position, token, index):
        return 'RK:%d:%s:%010d:%s:%04d' % (snapshot_id, kind, position,
                                            token, index)

    @classmethod
    def build(cls, snapshot_id, kind, position, token, references):
        """The entities that hold ``references`` (serialized ``Reference``)."""
        writer = storage.RangeWriter(cls.CODEC)
        parts = list(writer.add_all(references))
        parts.extend(writer.close())
        parts = parts or [b'']
        return [cls(key_name=cls.make_name(snapshot_id, kind, position, token,
                                           index), data=part,
                    parts=len(parts))
                for index, part in enumerate(parts)]

    @classmethod
    def part_keys(cls, snapshot_id, kind, position, token, parts):
        """The keys of a list of ``parts`` parts, the first one included."""
        return [cls.key_for(cls.make_name(snapshot_id, kind, position, token,
                                          index)) for index in range(parts)]

    @classmethod
    def read(cls, snapshot_id, kind, position, token):
        """``(references, keys of the parts)``, or None if the list is gone."""
        first = cls.get_by_key_name(cls.make_name(snapshot_id, kind, position,
                                                  token, 0))
        if first is None:
            return None
        keys = cls.part_keys(snapshot_id, kind, position, token, first.parts)
        rest = get_all(keys[1:]) if first.parts > 1 else []
        if any(part is None for part in rest):
            return None
        parts = [first.data] + [part.data for part in rest]
        return [entities.Reference.FromString(record) for record in
                storage.iter_records(parts, cls.CODEC)], [
                    first.key()] + [part.key() for part in rest]


class SnapshotMarkers(MarkerList):
    """The markers of one kind of a snapshot, ``CHUNK`` markers an entity.

    Kept apart from the ``Snapshot``, which every range's task writes: a
    kind of millions of entities has thousands of markers, and a snapshot
    entity that held them would be written again and again, and would
    outgrow the datastore's 1 MiB per entity.
    """

    @staticmethod
    def prefix(snapshot_id, kind, token):
        return 'SM:%d:%s:%s:' % (snapshot_id, kind, pass_name(token) or '-')
