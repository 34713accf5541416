"""Data in and out of the app: a snapshot's manifest, its ranges, uploads.

A range is served as the bytes it is stored as, with ``Content-Length``,
``ETag`` (its sha256) and HTTP Range support, so that a client can check
it and resume an interrupted download. The app never checks the bytes
itself on the way out: the client does, against the manifest.
"""
from urllib.parse import quote

from google.appengine.api import datastore_types
from google.appengine.ext import db
from webob import Response, exc

from .. import entities
from ..exceptions import RangeCorrupted, SnapshotNotFinished
from .access import refuse
from .models import RangeBackup, iter_backups
from .rewrite import rewrite_entity
from .web import allow, json_response, snapshot_or_404
from . import wire

__all__ = ['manifest', 'range_bytes', 'upload', 'StoredBytes',
           'MAX_UPLOAD_BYTES']

#: Largest upload body the app accepts (App Engine's own limit is 32 MB).
MAX_UPLOAD_BYTES = 16 * 1024 * 1024


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
    """The ranges of a finished snapshot, in the order a file holds them.

    Every range the snapshot counted must be stored, or it answers 409
    naming the first one missing: a download is whole or nothing.
    """
    snap = _finished(request)
    try:
        keys = snap.range_backup_keys()
    except RangeCorrupted as error:
        raise refuse(exc.HTTPConflict, str(error)) from error
    ranges = [{'name': rb.name, 'kind': rb.range_kind,
               'position': rb.position, 'count': rb.count,
               'raw_size': rb.raw_size, 'size': rb.size,
               'sha256': rb.sha256, 'codec': rb.codec,
               'format': rb.format, 'path': range_path(snap.id, rb.name)}
              for rb in iter_backups(snap.id, keys)]
    return json_response({'snapshot': snap.to_dict(), 'ranges': ranges})


class StoredBytes:
    """The stored bytes of a range, read from the datastore part by part.

    ``app_iter_range`` reads only the parts a byte range needs: every part
    but the last is ``part_size`` long (ranges written before it was kept:
    as long as the first), as ``storage.RangeWriter`` cuts them.
    """

    def __init__(self, backup):
        self.backup = backup

    def __iter__(self):
        return iter(self.backup.iter_parts(verify=False))

    def app_iter_range(self, start, stop):
        first = self.backup.data or b''
        step = self.backup.part_size or len(first) or 1
        index = start // step if self.backup.parts > 1 else 0
        offset = index * step
        while offset < stop and index < max(self.backup.parts, 1):
            data = self.backup.read_part(index)
            if offset + len(data) > start:
                yield data[max(start - offset, 0):stop - offset]
            offset += len(data)
            index += 1


@allow('GET')
def range_bytes(request):
    """The stored bytes of one range of a finished snapshot."""
    snap = _finished(request)
    name = request.urlvars['name']
    backup = None
    if name.startswith('RB:%d:' % snap.id):
        backup = db.get(RangeBackup.key_for(name))
    if not isinstance(backup, RangeBackup):
        raise refuse(exc.HTTPNotFound, 'snapshot %d has no range %s'
                     % (snap.id, name))
    response = Response(app_iter=StoredBytes(backup),
                        content_type='application/octet-stream',
                        conditional_response=True)
    response.content_length = backup.size or 0
    response.etag = backup.sha256
    response.accept_ranges = 'bytes'
    return response


@allow('POST')
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
    if request.content_length > MAX_UPLOAD_BYTES:
        raise refuse(exc.HTTPRequestEntityTooLarge,
                     'send at most %d bytes per request' % MAX_UPLOAD_BYTES)
    # Read as it comes: ``request.body`` would copy a large body into a
    # temporary file first.
    body = request.body_file.read(request.content_length)
    if len(body) != request.content_length:
        raise refuse(exc.HTTPBadRequest, 'the body is cut short')
    try:
        batch = wire.decode(body)
    except ValueError as error:
        raise refuse(exc.HTTPBadRequest, str(error)) from error
    app = datastore_types.ResolveAppId(None)
    entities.put([rewrite_entity(entity, app) for entity in batch])
    return json_response({'put': len(batch)})
