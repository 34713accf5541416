"""Finding a snapshot's range backups: the keys of every range it counted,
exactly once each and in key order, and the backups themselves, a batch
get at a time. Whatever reads a snapshot (a download, a restore, the data
the app serves) finds its ranges here."""
from .. import defaults
from ..base import get_all
from ..exceptions import RangeCorrupted, SnapshotIncomplete
from . import names
from .models import RangeBackup
from .spans import missing

__all__ = ['range_backup_keys', 'backup_keys', 'backup_bounds', 'in_order',
           'iter_backups']


def range_backup_keys(snap, kind=None):
    """Keys of the range backups of ``kind`` of the snapshot ``snap`` (of
    every kind, in key order, when None), data unread.

    Each range the snapshot counted must be there exactly once, else
    ``SnapshotIncomplete`` says which are not.
    """
    if kind is None:
        return [key for name in sorted(snap.kinds)
                for key in range_backup_keys(snap, name)]
    spans = snap.spans(kind)
    if spans is None:
        raise SnapshotIncomplete(snap.id, missing(kind, [], None))
    return [key for first, count in spans
            for key in backup_keys(snap.id, kind, first, count)]


def backup_bounds(snapshot_id, kind, first, count):
    """The keys between which the range backups ``first`` to
    ``first + count - 1`` of ``kind`` lie (and maybe look-alikes)."""
    return [RangeBackup.key_for(names.range_prefix(snapshot_id, kind,
                                                   position))
            for position in (first, first + count)]


def in_order(snapshot_id, kind, first, count, named):
    """The items of ``named`` ((key name, item) pairs, in key order between
    ``backup_bounds``) that are the range backups ``first`` to
    ``first + count - 1`` of ``kind``; ``SnapshotIncomplete`` names those
    that are not there exactly once."""
    prefix = names.range_prefix(snapshot_id, kind)
    found, positions = [], []
    for name, item in named:
        # A name prefix can be another kind's (kind ``A`` and
        # ``A:0000000001``): only names that end in position:size count.
        position = names.range_position(name, prefix)
        if position is not None:
            found.append(item)
            positions.append(position)
    if positions != list(range(first, first + count)):
        raise SnapshotIncomplete(snapshot_id, missing(
            kind, positions, [(first, count)]))
    return found


def backup_keys(snapshot_id, kind, first, count):
    """Keys of the range backups ``first`` to ``first + count - 1`` of
    ``kind``; ``SnapshotIncomplete`` names those that are not there exactly
    once."""
    low, high = backup_bounds(snapshot_id, kind, first, count)
    query = RangeBackup.all(keys_only=True).filter(
        '__key__ >=', low).filter('__key__ <', high)
    return in_order(snapshot_id, kind, first, count,
                    ((key.name(), key) for key in query.run(batch_size=1000)))


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
