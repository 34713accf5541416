"""A range of a snapshot downloaded from its app, resumed, and checked.

``RemoteClient.fetch_range`` calls it: the client of the app's JSON calls
needs none of it, nor the SDK it imports (``devfile``).
"""
import hashlib
import os

from ...exceptions import RangeCorrupted
from ..progress import quiet
from . import devfile
from .answer import TRANSIENT, Deadline, Transient, chunks

__all__ = ['fetch_range']


def fetch_range(remote, snapshot_id, entry, path, progress=None):
    """Download a range of the manifest to ``path`` and check it.

    Bytes already at ``path`` are kept and the rest is asked for. A
    range whose bytes do not match the manifest raises
    ``RangeCorrupted`` and leaves nothing at ``path``.
    """
    progress = progress or quiet
    name, size = entry['name'], entry['size']
    what = 'download of range %s' % name
    failures = 0
    have = _size(path)
    if have > size:
        os.unlink(path)
        have = 0
    progress('bytes', bytes=have)
    while have < size:
        started = have
        try:
            have = _fetch_once(remote, snapshot_id, entry, path, have,
                               progress)
            if have < size:
                raise Transient('connection closed after %d of %d bytes'
                                % (have, size))
        except TRANSIENT as error:
            have = _size(path)
            # Only a try that brought a good part of what is left starts
            # the count of failures again: a server trickling a few
            # bytes a try would otherwise be tried for ever.
            brought = have - started
            failures = 1 if brought >= min(remote.chunk_size, size -
                                           started) else failures + 1
            remote._pause(failures, what, error)
    if not os.path.lexists(path):
        devfile.open_private(path, 'wb').close()  # an empty range
    if _sha256(path) != entry['sha256']:
        os.unlink(path)
        raise RangeCorrupted(snapshot_id, name, 'downloaded bytes do '
                             'not match their sha256')
    return path


def _fetch_once(remote, snapshot_id, entry, path, have, progress):
    """One try; returns how many bytes of the range ``path`` holds."""
    headers = {}
    if have:
        headers['Range'] = 'bytes=%d-' % have
        headers['If-Range'] = '"%s"' % entry['sha256']
    deadline = Deadline(remote.response_seconds[1])
    with remote._ask('GET', remote.url + entry['path'], deadline, True,
                     headers=headers) as response:
        if response.status_code == 206:
            start = _range_start(response.headers.get('Content-Range'))
            if start != have:
                raise Transient('asked for bytes from %d, got them '
                                'from %d' % (have, start))
        elif have:
            # The whole range again: the app's copy is not the one we
            # have part of (If-Range), or it ignores ranges.
            progress('bytes', bytes=-have)
            have = 0
        mode = 'r+b' if have else 'wb'
        with devfile.open_private(path, mode) as fileobj:
            fileobj.seek(have)
            fileobj.truncate()
            for chunk in chunks(response, None, deadline,
                                remote.chunk_size):
                if have + len(chunk) > entry['size']:
                    fileobj.close()
                    os.unlink(path)
                    raise RangeCorrupted(snapshot_id, entry['name'],
                                         'the app sent more bytes than '
                                         'the manifest lists')
                fileobj.write(chunk)
                have += len(chunk)
                progress('bytes', bytes=len(chunk))
    return have


def _sha256(path):
    digest = hashlib.sha256()
    with devfile.open_private(path) as fileobj:
        for block in iter(lambda: fileobj.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def _size(path):
    """Bytes of a range fetched so far (what ``path`` holds, not what a
    link there points to)."""
    return os.lstat(path).st_size if os.path.lexists(path) else 0


def _range_start(header):
    """The first byte of ``Content-Range: bytes first-last/size``."""
    try:
        unit, _, spec = (header or '').partition(' ')
        if unit != 'bytes':
            raise ValueError(header)
        return int(spec.partition('-')[0])
    except ValueError:
        raise Transient('bad Content-Range %r' % header) from None
