"""Every key name of a snapshot's stored entities, built and parsed here.

A snapshot's own entities are named ``<tag>:<snapshot id>:...``, so that
one key-range query per tag finds them all (``of_snapshot``), to list
them or to purge them; ``completion`` jobs are named the same way.
"""
import re

__all__ = ['RANGE', 'PART', 'MARKERS', 'SHARDS', 'PROGRESS', 'TAGS',
           'of_snapshot', 'range_prefix', 'range_name', 'range_position',
           'part_name', 'markers_name', 'shards_name', 'progress_name',
           'snapshot_job', 'restore_job']

RANGE = 'RB'     # RangeBackup: one range of one kind
PART = 'RBP'     # RangeBackupPart: a range's further bytes
MARKERS = 'SM'   # SnapshotMarkers: the first keys of a chunk of ranges
SHARDS = 'SS'    # KindShards: how a kind is cut
PROGRESS = 'SP'  # ShardProgress: the ranges a shard has stored so far
#: Every tag a snapshot's entities are named by: what deleting it purges.
TAGS = (RANGE, PART, MARKERS, SHARDS, PROGRESS)

_POSITION = re.compile(r'(\d{10}):\d+')


def of_snapshot(tag, snapshot_id):
    """The prefix of every name of ``tag`` that belongs to the snapshot."""
    return '%s:%d:' % (tag, snapshot_id)


def range_prefix(snapshot_id, kind=None, position=None):
    """The prefix of the snapshot's range names: all, of one kind, or of
    one position of a kind (any stored size)."""
    prefix = of_snapshot(RANGE, snapshot_id)
    if kind is not None:
        prefix += kind + ':'
        if position is not None:
            prefix += '%010d:' % position
    return prefix


def range_name(snapshot_id, kind, position, size):
    """``RB:<snapshot id>:<kind>:<position>:<stored size>``."""
    return '%s%d' % (range_prefix(snapshot_id, kind, position), size)


def range_position(name, kind_prefix):
    """The position in a range name that starts with ``kind_prefix``
    (``range_prefix(snapshot_id, kind)``); None if it is not one."""
    found = _POSITION.fullmatch(name[len(kind_prefix):])
    return int(found.group(1)) if found else None


def part_name(snapshot_id, kind, position, token, index):
    """Part ``index`` of one storing (``token``) of a range."""
    return '%s%s:%010d:%s:%04d' % (of_snapshot(PART, snapshot_id), kind,
                                   position, token, index)


def markers_name(snapshot_id, kind, shard, chunk):
    return '%s%s:%04d:%06d' % (of_snapshot(MARKERS, snapshot_id), kind,
                               shard, chunk)


def shards_name(snapshot_id, kind):
    return '%s%s' % (of_snapshot(SHARDS, snapshot_id), kind)


def progress_name(snapshot_id, kind, shard):
    return '%s%s:%04d' % (of_snapshot(PROGRESS, snapshot_id), kind, shard)


def snapshot_job(snapshot_id, kind_index=None, shard=None):
    """The ``completion`` job of a snapshot, of one of its kinds, or of a
    shard of one."""
    parts = ['S', str(snapshot_id)]
    if kind_index is not None:
        parts.append(str(kind_index))
    if shard is not None:
        parts.append('%04d' % shard)
    return ':'.join(parts)


def restore_job(snapshot_id, restore_id=None, phase=None):
    """The ``completion`` job of a restore's phase (``check``, ``write``,
    ``plan``), named under its snapshot: the snapshot's purge finds the
    markers of all its restores (``restore_job(snapshot_id)``), even those
    a late copy of a task stored after it forgot them."""
    parts = ['R', str(snapshot_id)]
    if restore_id is not None:
        parts += [restore_id, phase]
    return ':'.join(parts)
