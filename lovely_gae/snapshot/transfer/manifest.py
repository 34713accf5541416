"""What a download trusts of a snapshot: nothing it has not checked.

An app's manifest comes a page at a time (``ManifestPages``), and each
page is checked whole before any of its ranges is asked for: every entry
one of the snapshot's own ranges, under the snapshot's own path on the
same app, with sizes, counts, codec and format a reader can hold to, and
the page's ranges the next ones of the snapshot's spans, in order, each
once. Every page is of the same snapshot, and once the last has come the
ranges must be all of its spans and hold the entities it recorded.
"""
import itertools
import re

from ... import defaults
from ...exceptions import BadManifest, SnapshotIncomplete
from .. import storage
from ..models import RangeBackup, Status
from ..spans import check_complete
from ..app.data import MAX_CURSOR, range_path

__all__ = ['ManifestPages', 'check_complete']

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
    """The page's snapshot: ``(id, kinds, {kind: spans}, entities, bytes)``."""
    wanted = None if snapshot_id in (None, 'latest') else snapshot_id
    snap = _field(manifest, 'snapshot', dict, wanted)
    found = _field(snap, 'id', int, wanted)
    if wanted is not None and str(found) != str(wanted):
        raise BadManifest(wanted, 'it is the manifest of snapshot %d' % found)
    if snap.get('status') != Status.FINISHED.value:
        raise BadManifest(found, 'the snapshot is %s, not finished'
                          % _show(snap.get('status')))
    if _field(snap, 'namespace', str, found) == defaults.NAMESPACE:
        raise BadManifest(found, 'namespace %r is the library\'s own'
                          % defaults.NAMESPACE)
    kinds = _field(snap, 'kinds', list, found)
    counted = _field(snap, 'range_spans', dict, found)
    if not all(type(kind) is str and kind.isprintable() and kind
               for kind in kinds):
        raise BadManifest(found, 'its kinds %s are not all names of kinds'
                          % _show(kinds))
    if set(kinds) != set(counted):
        raise BadManifest(found, 'its kinds %s are not those it counted '
                          'ranges of' % _show(kinds))
    spans = {kind: _spans(found, kind, _field(counted, kind, list, found,
                                              'range_spans of '))
             for kind in kinds}
    progress = _field(snap, 'progress', dict, found)
    return (found, set(kinds), spans,
            _field(progress, 'entities', int, found, 'progress: '),
            _field(progress, 'bytes', int, found, 'progress: '))


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


def _most_stored(codec, raw_size):
    """The most bytes ``codec`` makes of ``raw_size`` (bz2, zlib and lzma
    grow what they cannot compress by far less than this)."""
    if codec == 'none':
        return raw_size
    return raw_size + raw_size // 64 + 4096


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
    elif entry['size'] > _most_stored(entry['codec'], entry['raw_size']):
        problem = 'size %d is more than %s makes of %d bytes' % (
            entry['size'], entry['codec'], entry['raw_size'])
    if problem:
        raise BadManifest(snapshot_id, '%s%s' % (where, problem))


class ManifestPages:
    """The entries of a snapshot's manifest, fetched a page at a time.

    ``fetch(snapshot_id, after)`` answers a page (``RemoteClient.manifest``);
    ``snapshot_id`` is the id asked for (None or ``'latest'``: any). The
    first page is fetched and checked at once. Iterating yields the
    entries; each page is checked whole (``BadManifest``,
    ``SnapshotIncomplete``) before any entry of it is yielded, and the
    last one only once the pages cover the spans exactly and hold the
    entities the snapshot recorded. A page of entries is held at a time,
    whatever the snapshot holds.
    """

    def __init__(self, fetch, snapshot_id=None):
        self._fetch = fetch
        self._page = fetch('latest' if snapshot_id is None else snapshot_id,
                           None)
        self._shape = _check_snapshot(self._page, snapshot_id)
        self.snapshot = self._page['snapshot']
        self.snapshot_id, _, self._spans, entities, size = self._shape
        # Places ``(index of the kind, position)`` sort as a file holds them.
        self._kinds = sorted(self._spans)
        self._rank = {kind: index for index, kind in enumerate(self._kinds)}
        self.totals = {'entities': entities, 'bytes': size, 'ranges_total':
                       sum(count for spans in self._spans.values()
                           for _, count in spans)}

    def __iter__(self):
        page, start, index, held = self._page, (0, 0), 0, 0
        self._page = None  # a manifest is gone through once
        for number in itertools.count(1):
            entries, after = self._check_page(page, number, start, index)
            held += sum(entry['count'] for entry in entries)
            if after is None:
                break
            yield from entries
            index += len(entries)
            kind, position = self._place(entries[-1])
            start = (kind, position + 1)
            page = self._fetch(self.snapshot_id, after)
        if held != self.totals['entities']:
            raise SnapshotIncomplete(self.snapshot_id, 'its ranges hold %d '
                                     'entities, it recorded %d'
                                     % (held, self.totals['entities']))
        yield from entries

    def _place(self, entry):
        return self._rank[entry['kind']], entry['position']

    def _check_page(self, page, number, start, index):
        """The entries and cursor of page ``number``, which starts at place
        ``start``; its first entry is the manifest's ``index``-th."""
        found = self.snapshot_id
        if number > 1 and _check_snapshot(page, found) != self._shape:
            raise BadManifest(found, 'page %d is of a snapshot of other '
                              'kinds, spans or entities' % number)
        entries = _field(page, 'ranges', list, found)
        if 'next' not in page:
            raise BadManifest(found, 'page %d has no next' % number)
        after = page['next']
        if after is not None and not (
                type(after) is str and 0 < len(after) <= MAX_CURSOR
                and after.isascii() and after.isprintable()):
            raise BadManifest(found, 'page %d: next is %s, not a cursor'
                              % (number, _show(after)))
        for offset, entry in enumerate(entries):
            _check_entry(found, self._rank, entry, index + offset)
        places = [self._place(entry) for entry in entries]
        if after is not None and not places:
            raise BadManifest(found, 'page %d lists no ranges, yet another '
                              'follows' % number)
        for offset, (kind, position) in enumerate(places):
            if (kind, position) < start:
                raise SnapshotIncomplete(found, 'range %d (kind %r, position '
                                         '%d) is one of an earlier page' % (
                                             index + offset,
                                             self._kinds[kind], position))
        # The ranges from ``start`` to the page's last, or to the very end.
        end = None if after is None else max(places)
        check_complete(found, self._window(start, end),
                       [(entry['kind'], entry['position'])
                        for entry in entries])
        if places != sorted(places):
            raise SnapshotIncomplete(found, 'the ranges of page %d are out '
                                     'of order' % number)
        return entries, after

    def _window(self, start, end):
        """``{kind: spans}`` of the places from ``start`` to ``end`` (None:
        to the end), both included."""
        last = len(self._kinds) - 1 if end is None else end[0]
        window = {}
        for index in range(start[0], last + 1):
            kind = self._kinds[index]
            low = start[1] if index == start[0] else 0
            high = end[1] + 1 if end is not None and index == end[0] else None
            window[kind] = _clip(self._spans[kind], low, high)
        return window


def _clip(spans, low, high):
    """The parts of ``spans`` from position ``low`` on, and before ``high``
    (None: no end)."""
    clipped = []
    for first, count in spans:
        begin = max(first, low)
        stop = first + count if high is None else min(first + count, high)
        if begin < stop:
            clipped.append((begin, stop - begin))
    return clipped
