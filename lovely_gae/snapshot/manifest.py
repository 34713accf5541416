"""What a download trusts of a snapshot: nothing it has not checked.

An app's manifest is checked whole before any range is asked for: every
entry one of the snapshot's own ranges, under the snapshot's own path on
the same app, with sizes, counts, codec and format a reader can hold to.
Local and remote downloads alike check that the ranges are all there:
each kind's positions ``0 .. n - 1`` once, ``n`` as the snapshot recorded.
"""
import re

from .. import defaults
from ..exceptions import BadManifest, SnapshotIncomplete
from . import storage
from .models import RangeBackup, check_complete
from .transfer import range_path

__all__ = ['check_manifest', 'check_complete']

_SHA256 = re.compile(r'[0-9a-f]{64}')
#: Bytes one record takes at most: the longest entity and its length.
_MOST_PER_RECORD = defaults.MAX_ENTITY_BYTES + len(
    storage.varint(defaults.MAX_ENTITY_BYTES))
_ENTRY = {'name': str, 'kind': str, 'position': int, 'count': int,
          'raw_size': int, 'size': int, 'sha256': str, 'codec': str,
          'format': str, 'path': str}


def _show(value):
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + '...'


def _field(data, name, kind, snapshot_id, where=''):
    """``data[name]``, if it is of type ``kind`` (an int: not a bool, and
    not negative); else ``BadManifest``."""
    value = data.get(name) if isinstance(data, dict) else None
    if type(value) is not kind or (kind is int and value < 0):
        raise BadManifest(snapshot_id, '%s%s is %s, not %s' % (
            where, name, _show(value),
            'an integer >= 0' if kind is int else 'a ' + kind.__name__))
    return value


def _check_snapshot(manifest, snapshot_id):
    """The manifest's snapshot: ``(id, kinds, range counts, entities)``."""
    wanted = None if snapshot_id in (None, 'latest') else snapshot_id
    snap = _field(manifest, 'snapshot', dict, wanted)
    found = _field(snap, 'id', int, wanted)
    if wanted is not None and str(found) != str(wanted):
        raise BadManifest(wanted, 'it is the manifest of snapshot %d' % found)
    if snap.get('status') != 'finished':
        raise BadManifest(found, 'the snapshot is %s, not finished'
                          % _show(snap.get('status')))
    if _field(snap, 'namespace', str, found) == defaults.NAMESPACE:
        raise BadManifest(found, 'namespace %r is the library\'s own'
                          % defaults.NAMESPACE)
    kinds = _field(snap, 'kinds', list, found)
    spans = _field(snap, 'range_spans', dict, found)
    if not all(type(kind) is str and kind.isprintable() and kind
               for kind in kinds):
        raise BadManifest(found, 'its kinds %s are not all names of kinds'
                          % _show(kinds))
    if set(kinds) != set(spans):
        raise BadManifest(found, 'its kinds %s are not those it counted '
                          'ranges of' % _show(kinds))
    for kind in kinds:
        spans[kind] = _spans(found, kind, _field(spans, kind, list, found,
                                                 'range_spans of '))
    progress = _field(snap, 'progress', dict, found)
    return found, set(kinds), spans, _field(progress, 'entities', int,
                                            found)


def _spans(snapshot_id, kind, spans):
    """``[(first, count), ...]``: ascending, apart, each of a range or more."""
    checked, after = [], 0
    for span in spans:
        if not (type(span) is list and len(span) == 2
                and all(type(n) is int for n in span)
                and span[0] >= after and span[1] >= 1):
            raise BadManifest(snapshot_id, 'range_spans of %s: %s are no '
                              'spans of positions' % (_show(kind),
                                                      _show(spans)))
        checked.append(tuple(span))
        after = span[0] + span[1]
    return checked


def _check_entry(snapshot_id, kinds, entry, index):
    where = 'range %d: ' % index
    for name, kind in _ENTRY.items():
        _field(entry, name, kind, snapshot_id, where)
    name = entry['name']
    expected = RangeBackup.make_name(snapshot_id, entry['kind'],
                                     entry['position'], entry['size'])
    problem = None
    if entry['kind'] not in kinds:
        problem = 'kind %s is not one of the snapshot' % _show(entry['kind'])
    elif name != expected:
        problem = 'its name is not %s' % _show(expected)
    elif entry['path'] != range_path(snapshot_id, name):
        problem = 'path %s is not the snapshot\'s own' % _show(entry['path'])
    elif not _SHA256.fullmatch(entry['sha256']):
        problem = 'sha256 %s is no sha256' % _show(entry['sha256'])
    elif entry['codec'] not in storage.CODECS:
        problem = 'unknown codec %s' % _show(entry['codec'])
    elif entry['format'] != storage.FORMAT:
        problem = 'unknown format %s' % _show(entry['format'])
    elif not (entry['count'] <= entry['raw_size']
              <= entry['count'] * _MOST_PER_RECORD):
        problem = 'raw_size %d cannot hold %d entities' % (
            entry['raw_size'], entry['count'])
    if problem:
        raise BadManifest(snapshot_id, '%s%s' % (where, problem))


def check_manifest(manifest, snapshot_id=None):
    """Return ``manifest`` if a download can trust it; else ``BadManifest``,
    or ``SnapshotIncomplete`` if ranges are missing.

    ``snapshot_id`` is the id asked for (None or ``'latest'``: any).
    """
    found, kinds, spans, total = _check_snapshot(manifest, snapshot_id)
    entries = _field(manifest, 'ranges', list, found)
    for index, entry in enumerate(entries):
        _check_entry(found, kinds, entry, index)
    check_complete(found, spans, [(e["kind"], e["position"])
                                   for e in entries])
    held = sum(entry['count'] for entry in entries)
    if held != total:
        raise SnapshotIncomplete(found, 'its ranges hold %d entities, it '
                                 'recorded %d' % (held, total))
    return manifest


