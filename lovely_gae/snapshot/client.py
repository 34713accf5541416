"""Download a snapshot to a file a development datastore loads; upload one.

``download_snapshot`` writes ``<out_dir>/snapshot.<id>`` in the format of
the SDK's ``DatastoreFileStub``, from the datastore this process sees (as
the seed did) or from an app over HTTP(S). The file is written under a
temporary name and renamed when complete, so a failure never leaves a
partial file behind. ``upload_snapshot`` goes the other way: a file into a
datastore, here or through an app.
"""
import hashlib
import os
import shutil

from google.appengine.api import datastore_types
from google.protobuf.message import DecodeError

from .. import cache, defaults, entities
from ..entities import EntityProto
from ..exceptions import (BadEntity, InvalidInput, MaskUnmatched,
                          OutFileExists, RangeCorrupted, SnapshotIncomplete,
                          SnapshotNotFound)
from . import api, names, storage
from .progress import (BarProgress, LineProgress, SeedProgress,
                       progress_for, quiet)
from .backups import iter_backups, range_backup_keys
from .transfer import devfile, wire
from .transfer.rewrite import Transform

#: Ranges a local download reads in one batch get at most, and the bytes of
#: their first parts (each at most ``defaults.PART_SIZE``) at most.
_FETCH_RANGES = 100
_FETCH_BYTES = 8 * 1024 * 1024

__all__ = ['download_snapshot', 'upload_snapshot', 'SeedProgress',
           'LineProgress', 'BarProgress', 'progress_for']


def out_path(out_dir, snapshot_id):
    """Where snapshot ``snapshot_id`` goes in ``out_dir``, which is made
    (with its parents) if missing; ``OutFileExists`` if it is taken."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        # Not makedirs' 'File exists', which reads as if that were wrong.
        raise InvalidInput('out_dir', out_dir, 'is a file, not a directory')
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, 'snapshot.%d' % snapshot_id)
    if os.path.lexists(path):
        raise OutFileExists(path)
    return path


class _Checked:
    """The records a download writes, counted, checked and transformed.

    A record that names the library's namespace in its bytes, as it comes
    or as it is written, is checked whole (``wire.check_entity``): an
    entity of that namespace does name it, as strings are stored as they
    are. The others, nearly all, go on unchecked: checking every entity
    whole would make a download several times slower.
    """

    _LIBRARY = defaults.NAMESPACE.encode()

    def __init__(self, transform):
        self.transform = transform if transform else None
        self.count = 0

    def __call__(self, records):
        library, count = self._LIBRARY, 0
        try:
            for record in records:
                count += 1
                if library in record:
                    wire.check_entity(EntityProto.FromString(record))
                if self.transform is not None:
                    record = self._transformed(record)
                    if record is None:
                        continue
                yield record
        finally:
            self.count += count

    def _transformed(self, record):
        entity = self.transform.entity(EntityProto.FromString(record))
        if entity is None:
            return None
        record = entity.SerializeToString()
        if self._LIBRARY in record:
            wire.check_entity(entity)
        return record


def write_file(path, snapshot_id, sources, progress, transform, totals):
    """Write the records of ``sources`` to ``path``; never a partial file.

    ``sources`` yields ``(range name, stored size, records())`` in order;
    ``records()`` is called when the range's turn comes. ``totals`` is what
    the snapshot recorded of them, as ``Snapshot.progress`` has it:
    ``entities``, ``ranges_total`` and ``bytes``.
    """
    ranges, total = totals['ranges_total'], totals['entities']
    progress('start', snapshot_id=snapshot_id, ranges=ranges,
             bytes=totals['bytes'])
    checked = _Checked(transform)
    fileobj, temp_path = devfile.temp_file(path)
    try:
        with fileobj:
            writer = devfile.DevFileWriter(fileobj)
            for position, (name, size, records) in enumerate(sources, 1):
                progress('range', name=name, position=position,
                         total=ranges, bytes=size)
                try:
                    writer.add_many(checked(records()))
                except (ValueError, DecodeError) as exc:
                    raise RangeCorrupted(snapshot_id, name, str(exc)) from exc
                progress('range_done', name=name, bytes=size)
            writer.close()
        if checked.count != total:
            raise SnapshotIncomplete(snapshot_id, 'its ranges hold %d '
                                     'entities, it recorded %d'
                                     % (checked.count, total))
        if transform:
            transform.check()  # a mask that matched nothing: no file
        progress('save', path=path)
        devfile.publish(temp_path, path)
    except BaseException:
        if os.path.exists(temp_path):
            os.unlink(temp_path)
        raise
    return path


def _local_sources(snap, progress):
    """The snapshot's ranges, read in order as their turns come, a batch
    get at a time (``_FETCH_RANGES``, ``_FETCH_BYTES``). The names hold
    kind, position and size, so the listing reads no stored bytes, and
    finds any range that is missing before anything is written."""
    keys = range_backup_keys(snap)  # every range, once, or it raises
    prefix = len(names.range_prefix(snap.id))
    parts = [key.name()[prefix:].rsplit(':', 2) for key in keys]
    backups = iter_backups(snap.id, keys, _FETCH_RANGES, _FETCH_BYTES)

    def source(index):
        size = int(parts[index][2])

        def records():  # ``write_file`` asks for each range once, in order
            backup = next(backups)
            yield from storage.iter_records(
                backup.iter_parts(), backup.codec, backup.raw_size,
                backup.count)
            progress('bytes', bytes=size)
        return keys[index].name(), size, records
    return [source(index) for index in range(len(keys))]


def _part_path(partial_dir, name):
    digest = hashlib.sha256(name.encode()).hexdigest()[:32]
    return os.path.join(partial_dir, digest + '.part')


def _remote_sources(remote, pages, partial_dir, progress):
    """The ranges of the manifest's ``pages``, a page asked for when the
    ranges before it are written."""
    namespace = pages.snapshot.get('namespace') or ''

    def source(entry):
        def records():
            devfile.private_dir(partial_dir)
            path = remote.fetch_range(pages.snapshot_id, entry, _part_path(
                partial_dir, entry['name']), progress)
            yield from _of_range(storage.iter_records(
                _chunks(path), entry['codec'], entry['raw_size'],
                entry['count']), entry['kind'], namespace)
        return entry['name'], entry['size'], records
    return (source(entry) for entry in pages)


def _of_range(records, kind, namespace):
    """``records`` of a range an app sent, each an entity with a whole key
    of the range's ``kind`` and the snapshot's ``namespace``, else
    ``BadEntity``: what the app sends is checked as an upload would be,
    and the datastore's own ranges are not (``_Checked``)."""
    for record in records:
        key = EntityProto.FromString(record).key
        wire.check_key(key)
        if key.path.element[-1].type != kind or key.name_space != namespace:
            raise BadEntity('holds an entity of kind %r in namespace %r, '
                            'outside the range' % (
                                key.path.element[-1].type[:40],
                                key.name_space))
        yield record


def _chunks(path, size=1 << 20):
    with devfile.open_private(path) as fileobj:
        yield from iter(lambda: fileobj.read(size), b'')


def download_snapshot(out_dir, snapshot_id=None, url=None, token=None,
                      target_app_id=None, target_namespace=None, scrub=None,
                      progress=None):
    """Write snapshot ``snapshot_id`` (default: the latest finished one).

    Returns the path of the file written; ``out_dir`` is made if missing.
    Without ``url`` it reads the
    datastore this process sees; with ``url`` (an app's base URL, or a
    ``remote.RemoteClient``) it downloads over HTTP(S) with ``token``,
    keeping what it has in ``<out_dir>/.snapshot.<id>.partial`` (for this
    user alone) until the file is complete, so that an interrupted
    download resumes there (its error's ``kept`` says how many ranges are
    kept, of how many, and where; the download started again tells
    ``resume`` with ``kept`` and ``ranges``). Every range must be there and
    hold what the
    snapshot recorded, and no entity may be the library's own, or nothing
    is written (``SnapshotIncomplete``, ``RangeCorrupted``).
    ``target_app_id`` and ``target_namespace`` move keys and references
    (see ``rewrite``); ``scrub(entity)`` returns the ``EntityProto`` to
    write or None to drop it, and its ``check()``, if it has one, is called
    before the file gets its name: a ``rewrite.Mask`` that matched nothing
    raises ``MaskUnmatched`` there, and nothing is written (nor kept for a
    resume). ``progress(event, **info)`` is told
    ``start``, each ``range``, ``bytes`` as they come, and ``save``; by
    default it prints the seed's lines.
    """
    transform = Transform(target_app_id, target_namespace, scrub)
    progress = progress or SeedProgress()
    if url is None:
        return _download_local(out_dir, snapshot_id, transform, progress)
    from .transfer.remote import RemoteClient
    if isinstance(url, RemoteClient):
        return _download_remote(url, out_dir, snapshot_id, transform,
                                progress)
    with RemoteClient(url, token) as remote:
        return _download_remote(remote, out_dir, snapshot_id, transform,
                                progress)


def _download_local(out_dir, snapshot_id, transform, progress):
    if snapshot_id is None:
        snap = api.latest_snapshot()
        if snap is None:
            raise SnapshotNotFound('latest')
    else:
        snap = api.get_snapshot(snapshot_id)
    snap.check_finished()
    path = out_path(out_dir, snap.id)
    return write_file(path, snap.id, _local_sources(snap, progress),
                      progress, transform, snap.progress())


def _download_remote(remote, out_dir, snapshot_id, transform, progress):
    pages = remote.manifest_pages('latest' if snapshot_id is None
                                  else snapshot_id)
    snapshot_id = pages.snapshot_id
    path = out_path(out_dir, snapshot_id)
    partial_dir = os.path.join(out_dir, '.snapshot.%d.partial' % snapshot_id)
    ranges = pages.totals['ranges_total']
    if _parts(partial_dir):
        progress('resume', kept=_parts(partial_dir), ranges=ranges)
    sources = _remote_sources(remote, pages, partial_dir, progress)
    try:
        write_file(path, snapshot_id, sources, progress, transform,
                   pages.totals)
    except MaskUnmatched:
        # The ranges kept for a resume are the snapshot unmasked, whole by
        # now: not to be left on the disk of one who asked for a mask.
        shutil.rmtree(partial_dir, ignore_errors=True)
        raise
    except BaseException as error:
        if isinstance(error, RangeCorrupted):
            # Fetched as the app has it, and refused: no use to resume from.
            part = _part_path(partial_dir, error.range_name)
            if os.path.lexists(part):
                os.unlink(part)
        if _parts(partial_dir):  # what a download started again goes on from
            error.kept = {'ranges': _parts(partial_dir), 'of': ranges,
                          'path': partial_dir}
        raise
    shutil.rmtree(partial_dir, ignore_errors=True)
    return path


def _parts(partial_dir):
    """How many ranges (whole or in part) ``partial_dir`` keeps."""
    if os.path.islink(partial_dir):
        return 0  # not ours: refused when a range is fetched
    try:
        return sum(name.endswith('.part') for name in os.listdir(partial_dir))
    except OSError:
        return 0


def _entities(path, transform):
    for entity in devfile.checked_entities(path):
        if transform:
            entity = transform.entity(entity)
            if entity is None:
                continue
            wire.check_entity(entity)
        yield entity


def upload_snapshot(path, url=None, token=None, target_namespace=None,
                    scrub=None, batch_bytes=None, progress=None):
    """Put the entities of a downloaded file into a datastore; return how many.

    Without ``url`` they go into the datastore this process sees, moved to
    its app id; with ``url`` they go through the app's upload endpoint,
    which moves them to its own app id. Batches stay under ``batch_bytes``
    (App Engine takes at most 1 MiB per request). The whole file is read and checked, each entity as it
    will be sent, before anything is put: a damaged file, or one holding
    the library's own entities, puts nothing. ``scrub`` is as
    ``download_snapshot`` takes it, and so is its ``check()``, called once
    the file has been read: a ``rewrite.Mask`` that matched nothing raises
    ``MaskUnmatched`` and nothing is sent (unless ``allow_unmatched``).
    So ``scrub`` sees each entity twice, to check and to send, and must
    give the same both times, as a ``Mask`` does. An upload that stops
    (an error, Ctrl-C) after a batch was put says so in its error's
    ``put``: ``{'entities': put at least, 'of': entities to put}``;
    putting them all again does no harm.
    """
    moved_to = datastore_types.ResolveAppId(None) if url is None else None
    transform = Transform(moved_to, target_namespace, scrub)
    total = sum(1 for _ in _entities(path, transform))
    transform.check()  # a misspelt mask: the data it meant goes nowhere
    records = (e.SerializeToString() for e in _entities(path, transform))
    told = _upload_progress(progress, 'upload of %s' % path, total)
    put = [0]

    def counted(event, **info):
        if event == 'batch':
            put[0] += info['entities']
        told(event, **info)
    try:
        return _put(records, url, token, batch_bytes, counted)
    except BaseException as error:
        if put[0]:  # part of the file is in, whatever stopped it
            error.put = {'entities': put[0], 'of': total}
        raise


def _put(records, url, token, batch_bytes, progress):
    """Put ``records`` here (``url`` None) or through the app at ``url``."""
    if url is None:
        count = 0
        for body, size in wire.batches(records, batch_bytes):
            batch = wire.decode(body)
            with cache.uncached([entity.key for entity in batch]):
                entities.put(batch)
            count += size
            progress('batch', entities=size, bytes=len(body))
        return count
    from .transfer.remote import RemoteClient
    if isinstance(url, RemoteClient):
        return url.upload(records, batch_bytes, progress)
    with RemoteClient(url, token) as remote:
        return remote.upload(records, batch_bytes, progress)


def _upload_progress(progress, name, total):
    """``progress``, told of each ``batch`` with the upload's ``name``, the
    entities ``done`` so far and their ``total`` too."""
    if progress is None:
        return quiet
    done = [0]

    def told(event, **info):
        if event == 'batch':
            done[0] += info['entities']
            info = dict(info, name=name, done=done[0], total=total)
        progress(event, **info)
    return told
