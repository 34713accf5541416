"""The floors: what a snapshot, restore and download cannot beat.

Hand-written with the SDK, as issue 5 defines them: no task queue, no
bookkeeping, one pass over the data. Each takes a ``timing.Budget``.
"""
import bz2
import pickle

from google.appengine.ext import db

from lovely_gae import defaults, entities
from lovely_gae.snapshot import api, storage

from . import data

__all__ = ['RANGE', 'RESTORE_BATCH', 'FloorRange', 'snapshot', 'restore',
           'download', 'small_puts']

#: Entities per stored range, as the library's default batch size.
RANGE = defaults.BATCH_SIZE
#: Entities per put when restoring.
RESTORE_BATCH = defaults.MAX_REQUEST_ENTITIES


class FloorRange(db.Model):
    """One stored range of the floor snapshot."""

    data = db.BlobProperty()

    @classmethod
    def kind(cls):
        return 'BenchFloorRange'


class Small(db.Model):
    """The small entity of the one-put reference of the queue overhead."""

    value = db.IntegerProperty()

    @classmethod
    def kind(cls):
        return 'BenchSmall'


def seed_blob(records):
    """The seed's stored format: bz2 of a pickled list of encoded entities.

    Python 2's protocol 2 wrote each str with the same opcode and length
    as protocol 3 writes bytes. Pickles are only written here, never read.
    """
    return bz2.compress(pickle.dumps(list(records), protocol=3), 9)


def _store(position, records):
    blob = seed_blob(records)
    db.put(FloorRange(key_name='range-%08d' % position, data=db.Blob(blob)))
    return len(blob)


def snapshot(budget, total):
    """Key-ordered scan, serialize, bz2 per 200, one blob entity per range.

    Returns the stored bytes, in the seed's format (``seed_blob``).
    """
    stored = position = 0
    records = []
    for entity in entities.iter_range(data.KIND, ''):
        records.append(entity.SerializeToString())
        if len(records) == RANGE:
            stored += _store(position, records)
            position += 1
            records = []
            budget.check(position * RANGE / total)
    if records:
        stored += _store(position, records)
    data.settle()
    budget.stop()
    return stored


def restore(budget, protos):
    """Put the same ``EntityProto`` messages back, ``RESTORE_BATCH`` a call."""
    for start in range(0, len(protos), RESTORE_BATCH):
        entities.put(protos[start:start + RESTORE_BATCH])
        budget.check(start / len(protos))
    data.settle()
    return budget.stop()


def download(budget, snapshot_id, path):
    """Read the snapshot's stored blobs, decompress, write the bytes."""
    backups = api.get_snapshot(snapshot_id).range_backups()
    written = 0
    with open(path, 'wb') as out:
        for position, backup in enumerate(backups):
            decompressor = storage.CODECS[backup.codec][1]()
            for part in backup.iter_parts(verify=False):
                chunk = decompressor.decompress(part)
                out.write(chunk)
                written += len(chunk)
            budget.check(position / len(backups))
    budget.stop()
    return written


def small_puts(budget, count):
    """``count`` single puts of a small entity; seconds per put."""
    for number in range(count):
        db.put(Small(key_name='small-%d' % number, value=number))
        budget.check(number / count)
    data.settle()
    return budget.stop() / count
