"""Data in and out of the app: a snapshot's manifest, its ranges, uploads.

A range is served as the bytes it is stored as, with ``Content-Length``,
``ETag`` (its sha256) and HTTP Range support, so that a client can check
it and resume an interrupted download. The app never checks the bytes
itself on the way out: the client does, against the manifest.

An upload is one batch of at most ``MAX_UPLOAD_BYTES`` and
``defaults.MAX_REQUEST_ENTITIES`` entities: what one datastore put takes.
"""
import itertools
import re
from urllib.parse import quote

from google.appengine.api import datastore_types
from google.appengine.ext import db
from webob import Response, exc

from ... import cache, defaults, entities
from ...exceptions import (RangeCorrupted, SnapshotIncomplete,
                           SnapshotNotFinished)
from .. import calls, names, storage
from ..backups import backup_keys, iter_backups
from ..models import RangeBackup
from ..transfer import wire
from ..transfer.rewrite import rewrite_entity
from .access import refuse
from .web import MAX_BODY_BYTES, allow, json_response, snapshot_or_404

__all__ = ['manifest', 'range_bytes', 'upload', 'MANIFEST_PAGE',
           'MAX_CURSOR']

#: Largest upload body the app accepts: a client sends at most
#: ``wire.BATCH_BYTES``.
MAX_UPLOAD_BYTES = MAX_BODY_BYTES

#: Ranges one page of a manifest lists at most: its answer stays small
#: (about 300 bytes a range), and so do the reads behind it.
MANIFEST_PAGE = 100

#: Characters a manifest's cursor has at most.
MAX_CURSOR = 64

# A cursor: snapshot id, index of the kind in its sorted kinds, position.
_CURSOR = re.compile(r'([0-9]{1,19})\.([0-9]{1,19})\.([0-9]{1,19})\Z')

# One range of bytes: the only form served.
_RANGE = re.compile(r'([0-9]*)-([0-9]*)\Z')

#: Past any body's length: what a position of more than 19 digits is read
#: as, so that no int() of thousands of digits is ever made.
_BEYOND = 2 ** 63


def _finished(request):
    snap = snapshot_or_404(request.urlvars['id'])
    try:
        snap.check_finished()
    except SnapshotNotFinished as error:
        raise refuse(exc.HTTPConflict, str(error)) from error
    return snap


def range_path(snapshot_id, name):
    return '/lovely.gae/snapshots/%d/ranges/%s' % (snapshot_id,
                                                   quote(name, safe=''))


@allow('GET')
def manifest(request):
    """One page of a finished snapshot's manifest: the snapshot, its next
    ranges in the order a file holds them, and ``next``, the cursor of the
    page after it (None after the last), to send back as ``after``.

    Each range the page covers must be stored, or it answers 409 naming
    the first one missing: a download is whole or nothing.
    """
    snap = _finished(request)
    kinds = sorted(snap.kinds)  # the order of the keys, as downloads write
    start = _cursor(request, snap, kinds)
    try:
        keys, after = _page(snap, kinds, start)
        # A range deleted since it was listed (the snapshot being deleted)
        # is ``RangeCorrupted``: a conflict too, not a 500.
        ranges = [{'name': rb.name, 'kind': rb.range_kind,
                   'position': rb.position, 'count': rb.count,
                   'raw_size': rb.raw_size, 'size': rb.size,
                   'sha256': rb.sha256, 'codec': rb.codec,
                   'format': rb.format, 'path': range_path(snap.id, rb.name)}
                  for rb in iter_backups(snap.id, keys)]
    except (SnapshotIncomplete, RangeCorrupted) as error:
        raise refuse(exc.HTTPConflict, str(error)) from error
    return json_response({'snapshot': calls.get_snapshot(snap),
                          'ranges': ranges,
                          'next': after})


def _spans(snap, kind):
    spans = snap.spans(kind)
    if spans is None:
        raise SnapshotIncomplete(snap.id, 'the ranges of kind %r are not '
                                 'known' % kind)
    return spans


def _page(snap, kinds, start):
    """The keys of the ranges of the page from ``start`` (``(index in
    kinds, position)``), and the cursor of the page after it or None.

    Each window of a span is listed on its own (``backup_keys``): only the
    keys the page serves are read, whatever the snapshot holds.
    """
    keys, left = [], MANIFEST_PAGE
    for index in range(start[0], len(kinds)):
        kind = kinds[index]
        for first, count in _spans(snap, kind):
            if index == start[0] and first < start[1]:
                first, count = start[1], first + count - start[1]
            if count <= 0:
                continue
            if not left:
                return keys, '%d.%d.%d' % (snap.id, index, first)
            taken = min(count, left)
            keys += backup_keys(snap.id, kind, first, taken)
            left -= taken
            if taken < count:
                return keys, '%d.%d.%d' % (snap.id, index, first + taken)
    return keys, None


def _cursor(request, snap, kinds):
    """Where the page asked for starts: ``(index in kinds, position)``.

    A cursor is ``<snapshot id>.<kind index>.<position>`` of a range of
    this snapshot; anything else is a 400.
    """
    found = request.GET.getall('after')  # UTF-8: ``web.read_params``
    if not found:
        return 0, 0
    text = found[-1]
    match = _CURSOR.match(text) if len(text) <= MAX_CURSOR else None
    if len(found) > 1:
        problem = 'send one cursor'
    elif match is None:
        problem = 'no cursor of a manifest'
    else:
        snapshot_id, index, position = map(int, match.groups())
        if snapshot_id != snap.id:
            problem = 'a cursor of another snapshot'
        elif index >= len(kinds) or not any(
                first <= position < first + count
                for first, count in snap.spans(kinds[index]) or ()):
            problem = 'past the ranges of snapshot %d' % snap.id
        else:
            return index, position
    raise refuse(exc.HTTPBadRequest, 'invalid after %r: %s'
                 % (text[:MAX_CURSOR], problem))


class StoredBytes:
    """The stored bytes of a range, read from the datastore part by part.

    ``app_iter_range`` reads only the parts a byte range needs: every part
    but the last is ``part_size`` long, as ``storage.RangeWriter`` cuts
    them.
    """

    def __init__(self, backup):
        self.backup = backup

    def __iter__(self):
        return iter(self.backup.iter_parts(verify=False))

    def app_iter_range(self, start, stop):
        step = self.backup.part_size
        index = start // step if self.backup.parts > 1 else 0
        offset = index * step
        while offset < stop and index < self.backup.parts:
            data = self.backup.read_part(index)
            if offset + len(data) > start:
                yield data[max(start - offset, 0):stop - offset]
            offset += len(data)
            index += 1


def _position(digits):
    if not digits:
        return None
    return int(digits) if len(digits) <= 19 else _BEYOND


def _check_range(request, size):
    """Leave the ``Range`` header in a form WebOb reads right, or refuse it.

    WebOb would answer ``bytes=--5`` with a 500 and ``bytes=-0`` with the
    whole body. A malformed byte range is a 400; one that selects nothing
    is left for WebOb to answer 416 (it honours ``If-Range``). Several
    ranges or another unit are ignored, as RFC 9110 allows: the whole body
    is sent.
    """
    header = request.headers.get('Range')
    if header is None:
        return
    unit, _, ranges = ''.join(header.split()).partition('=')
    if unit.lower() != 'bytes' or ',' in ranges:
        del request.headers['Range']
        return
    match = _RANGE.match(ranges)
    first, last = map(_position, match.groups()) if match else (None, None)
    if (first is None and last is None) or (
            first is not None and last is not None and last < first):
        raise refuse(exc.HTTPBadRequest, 'invalid Range %r: ask for one '
                     'range of bytes, as bytes=FIRST-LAST, bytes=FIRST- or '
                     'bytes=-LENGTH' % header[:60])
    if first is None:  # the last ``last`` bytes; none: nothing selected
        first, last = max(size - last, 0), None
    request.headers['Range'] = 'bytes=%d-%s' % (
        first, '' if last is None else last)


@allow('GET')
def range_bytes(request):
    """The stored bytes of one range of a finished snapshot."""
    name = request.urlvars['name']
    if len(name.encode('utf-8')) > defaults.MAX_NAME_BYTES:
        raise refuse(exc.HTTPBadRequest, 'invalid range name %r...: longer '
                     'than %d bytes' % (name[:40], defaults.MAX_NAME_BYTES))
    snap = _finished(request)
    backup = None
    if name.startswith(names.range_prefix(snap.id)):
        backup = db.get(RangeBackup.key_for(name))
    if not isinstance(backup, RangeBackup):
        raise refuse(exc.HTTPNotFound, 'snapshot %d has no range %s'
                     % (snap.id, name))
    _check_range(request, backup.size or 0)
    response = Response(app_iter=StoredBytes(backup),
                        content_type='application/octet-stream',
                        conditional_response=True)
    response.content_length = backup.size or 0
    response.etag = backup.sha256
    response.accept_ranges = 'bytes'
    return response


def _count_records(body, limit):
    """How many records ``body`` holds, counted up to ``limit + 1``."""
    return sum(1 for _ in itertools.islice(
        storage.iter_records([body], 'none'), limit + 1))


@allow('POST', max_body=MAX_UPLOAD_BYTES)
def upload(request):
    """Put a batch of entities (see ``wire``) into this app's datastore.

    Keys and references move to this app's id, namespaces stay. The batch
    is checked whole before anything is written: one bad entity and
    nothing is put.
    """
    if request.content_type != wire.CONTENT_TYPE:
        raise refuse(exc.HTTPUnsupportedMediaType,
                     'send %s' % wire.CONTENT_TYPE)
    if request.content_length is None:
        raise refuse(exc.HTTPLengthRequired, 'Content-Length is required')
    # Read as it comes: ``request.body`` would copy it into a temporary
    # file first. ``SnapshotApp`` has checked its length.
    body = request.body_file.read(request.content_length)
    if len(body) != request.content_length:
        raise refuse(exc.HTTPBadRequest, 'the body is cut short')
    limit = defaults.MAX_REQUEST_ENTITIES
    try:
        # Counted before any entity is decoded: a body of tiny records
        # would cost time and memory out of all proportion to its size.
        if _count_records(body, limit) > limit:
            raise refuse(exc.HTTPRequestEntityTooLarge,
                         'send at most %d entities per request' % limit)
        app = datastore_types.ResolveAppId(None)
        batch = [rewrite_entity(entity, app) for entity in wire.decode(body)]
    except ValueError as error:
        raise refuse(exc.HTTPBadRequest, str(error)) from error
    with cache.uncached([entity.key for entity in batch]):
        entities.put(batch)
    return json_response(calls.uploaded(len(batch)))
