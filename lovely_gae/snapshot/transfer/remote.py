"""The snapshot app over HTTP(S): JSON calls, range downloads, uploads.

``RemoteClient`` keeps one ``requests`` session with the bearer token. Calls
that can be repeated safely are retried with exponential backoff on what
a retry can mend: connections cut, timeouts and 429/5xx answers; an app
that cannot be reached at all (connection refused, no such host) fails at
once; a range download resumes
where the last try stopped (``Range: bytes=N-``, guarded by ``If-Range``)
and is checked against the manifest's size and sha256, each page of the
manifest against what a download can trust (``manifest``). Redirects are never
followed, as the token would go along. Nothing received is ever unpickled,
nor unpacked, nor read beyond a bound in bytes and time (``answer``).

The JSON calls need nothing of the SDK: ranges (``fetch``), the manifest
and uploads (``wire``) are imported by the calls that move data, so that a
``lovely-gae --url`` command that moves none starts at once.
"""
import concurrent.futures
import logging
import re
import socket
import time
from urllib.parse import quote, urlsplit

import requests

from ... import __version__
from ...exceptions import (DownloadError, RestoreNotFound,
                           SnapshotNotFinished, SnapshotNotFound)
from ..app.access import configured_token, is_loopback_host
from ..progress import quiet
from . import shapes
from .answer import (TRANSIENT, Deadline, NotTheApp, RemoteError, check,
                     read_json)

__all__ = ['RemoteClient', 'RemoteError']

log = logging.getLogger(__name__)


def _brief(error):
    """One short line for an error; those of requests run long."""
    if isinstance(error, requests.Timeout):
        return 'timed out'
    text = str(error)
    found = re.search(r'\[Errno -?\d+\] ([^\'")]+)', text)
    if found:
        return found.group(1).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def _unreachable(error):
    """Why no connection could be made, if no retry will mend it; else
    None. Refused: nothing listens there; no such host: the name is wrong
    (a temporary failure of name resolution is retried)."""
    if not isinstance(error, requests.ConnectionError) or isinstance(
            error, requests.Timeout):
        return None
    seen, cause = set(), error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ConnectionRefusedError):
            return 'connection refused'
        if isinstance(cause, socket.gaierror) and cause.errno in (
                socket.EAI_NONAME, getattr(socket, 'EAI_NODATA', None)):
            return 'no such host'
        reason = getattr(cause, 'reason', None)  # urllib3's MaxRetryError
        cause = (reason if isinstance(reason, BaseException)
                 else cause.__cause__ or cause.__context__)
    return None


class RemoteClient:
    """A client of the app at ``url`` (its base: ``https://app.example``).

    ``token`` falls back to ``$LOVELY_GAE_TOKEN``. Every attribute below
    can also be given as an argument.
    """

    #: Tries after the first for a call that can be repeated.
    retries = 5
    #: Seconds before the first retry; doubled on each further one.
    backoff = 0.5
    #: Longest wait between two tries, in seconds.
    max_backoff = 30.0
    #: Seconds to connect and to wait for each read.
    timeout = (10.0, 60.0)
    #: Seconds a whole answer may take, once asked for: one of JSON, and
    #: one of a range's bytes.
    response_seconds = (120.0, 600.0)
    #: Bytes of a JSON answer at most, a page of a manifest included.
    json_bytes = 16 << 20
    #: Bytes read from the network at a time.
    chunk_size = 64 * 1024
    #: Seconds between two looks at the work waited for.
    poll_seconds = 1.0
    #: Snapshots asked for in a page of a listing with a limit (the app
    #: sends 1000 at most: ``calls.MAX_LIST_PAGE``).
    list_page = 500

    _settings = ('retries', 'backoff', 'max_backoff', 'timeout',
                 'response_seconds', 'json_bytes', 'chunk_size', 'list_page')

    def __init__(self, url, token=None, session=None, **settings):
        for name, value in settings.items():
            if name not in self._settings:
                raise TypeError('unknown setting %r' % name)
            if value is not None:
                setattr(self, name, value)
        self.url = url.rstrip('/')
        if self.url.endswith('/lovely.gae'):
            self.url = self.url[:-len('/lovely.gae')]
        self.session = session or requests.Session()
        self.session.headers['User-Agent'] = 'lovely-gae/%s' % __version__
        # Nothing packed: a few kilobytes of gzip may unpack to gigabytes.
        self.session.headers['Accept-Encoding'] = 'identity'
        token = configured_token(token)
        if token:
            self.session.headers['Authorization'] = 'Bearer ' + token
            host = urlsplit(self.url).hostname or ''
            if self.url.startswith('http://') and not is_loopback_host(host):
                log.warning('the token goes unencrypted over plain HTTP '
                            'to %s; use https', self.url)

    def close(self):
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _fail(self, what, error, tries=None):
        """Raise the ``DownloadError`` of ``what`` that ended in ``error``
        (after ``tries``, if it was retried)."""
        unreachable = _unreachable(error)
        if unreachable:
            raise DownloadError('cannot connect to %s: %s'
                                % (self.url, unreachable)) from error
        raise DownloadError('%s failed%s: %s' % (
            what, '' if tries is None else ' after %d tries' % tries,
            _brief(error))) from error

    def _pause(self, failures, what, error):
        """Wait before the next try, or fail if there is none: the tries
        are used up, or no retry can reach the app."""
        if failures > self.retries or _unreachable(error):
            self._fail(what, error, failures)
        delay = min(self.backoff * 2 ** (failures - 1), self.max_backoff)
        log.warning('%s failed (%s); try %d of %d in %.1f seconds', what,
                    _brief(error), failures + 1, self.retries + 1, delay)
        time.sleep(delay)

    def _ask(self, method, url, deadline, retry, **kwargs):
        """The response to ``method url``, checked (``answer.check``), its
        body not yet read; close it."""
        response = self.session.request(
            method, url, timeout=self.timeout, allow_redirects=False,
            stream=True, **kwargs)
        try:
            return check(response, deadline, retry)
        except BaseException:
            response.close()
            raise

    def json(self, method, path, retry=True, shape=None, **kwargs):
        """The JSON answer to ``method path``, of ``shape`` if given
        (``shapes``); retried if ``retry``."""
        url = self.url + path
        what = '%s %s' % (method, url)
        failures = 0
        while True:
            try:
                deadline = Deadline(self.response_seconds[0])
                with self._ask(method, url, deadline, retry,
                               **kwargs) as response:
                    answer = read_json(response, self.json_bytes, deadline,
                                       self.chunk_size)
                return answer if shape is None else shapes.check(
                    answer, shape, what)
            except TRANSIENT as error:
                if not retry:
                    self._fail(what, error)
                failures += 1
                self._pause(failures, what, error)

    def _snapshot_call(self, snapshot_id, method, rest='', **kwargs):
        """``method`` on ``/lovely.gae/snapshots/<snapshot_id><rest>``."""
        try:
            return self.json(method, '/lovely.gae/snapshots/' + quote(
                str(snapshot_id), safe='') + rest, **kwargs)
        except NotTheApp:
            raise  # no app there: nor a snapshot to speak of
        except RemoteError as error:
            if error.status == 404 and 'no such page' not in error.reason:
                raise SnapshotNotFound(snapshot_id) from error
            if error.status == 409 and 'not finished' in error.reason:
                info = self.get_snapshot(snapshot_id)
                raise SnapshotNotFinished(info['id'], info['status']) \
                    from error
            raise  # its one line says what conflicts (a restore running)

    # The calls the command line makes; each answers what the app sends.

    def list_snapshots(self, limit=None):
        """The snapshots, newest first, at most ``limit``: the app's pages
        of them (of its own size, or with a limit ``list_page`` at most),
        asked for one after the other."""
        found, after = [], None
        while limit is None or len(found) < limit:
            params = {} if limit is None else {
                'limit': min(self.list_page, limit - len(found))}
            if after is not None:
                params['after'] = after
            page = self.json('GET', '/lovely.gae/snapshots', params=params,
                             shape=shapes.PAGE)
            found += page['snapshots']
            after = page.get('next')
            if after is None or not page['snapshots']:
                break
        return found

    def get_snapshot(self, snapshot_id):
        return self._snapshot_call(snapshot_id, 'GET', shape=shapes.SNAPSHOT)

    def create_snapshot(self, kinds=None, batchsize=None, namespace=None,
                        allow_empty=True):
        """Start a snapshot; unless ``allow_empty``, the app refuses kinds
        that have no entities."""
        data = {'kinds': list(kinds or []), 'batchsize': batchsize,
                'namespace': namespace,
                'allow_empty': None if allow_empty else 'false'}
        return self.json('POST', '/lovely.gae/snapshots', retry=False,
                         data={k: v for k, v in data.items() if v},
                         shape=shapes.SNAPSHOT)

    def restore_snapshot(self, snapshot_id, kinds=None, dry_run=False):
        data = {'kinds': list(kinds or []), 'dry_run': 'true' if dry_run
                else 'false'}
        return self._snapshot_call(snapshot_id, 'POST', '/restore',
                                   retry=False, data=data,
                                   shape=shapes.STARTED)

    def get_restore(self, snapshot_id, restore_id):
        """Restore (or dry run) ``restore_id`` of snapshot ``snapshot_id``."""
        try:  # the app reads the restore alone: a 404 is of the restore
            return self._snapshot_call(snapshot_id, 'GET', '/restores/'
                                       + quote(str(restore_id), safe=''),
                                       shape=shapes.RESTORE)
        except SnapshotNotFound as error:
            raise RestoreNotFound(snapshot_id, restore_id) from error

    def delete_snapshot(self, snapshot_id):
        return self._snapshot_call(snapshot_id, 'POST', '/delete',
                                   retry=False, shape=shapes.DELETED)

    def prune(self, keep, only=None):
        """``only``: the ids agreed to (``api.prune``); sent in the body."""
        return self.json('POST', '/lovely.gae/prune', retry=False,
                         params={'keep': keep}, data={'only': list(only)}
                         if only else None, shape=shapes.DELETED)

    def run_worker(self, seconds=None, wait=False, threads=1):
        """Have the app run due tasks; with ``wait``, until none is left;
        with ``threads``, that many calls at once (App Engine spreads them
        over its instances)."""
        params = {'seconds': seconds} if seconds else {}
        ran = 0
        while True:
            with concurrent.futures.ThreadPoolExecutor(threads) as pool:
                answers = list(pool.map(lambda _: self.json(
                    'POST', '/lovely.gae/worker', retry=False,
                    params=params, shape=shapes.WORKER), range(threads)))
            ran += sum(answer['ran'] for answer in answers)
            if not (wait and answers[-1]['queued']
                    and any(a['ran'] for a in answers)):
                return dict(answers[-1], ran=ran)

    def pause(self, seconds):
        """Wait ``seconds`` while the app works (``waiting.wait``)."""
        time.sleep(seconds)

    # Data in and out.

    def manifest(self, snapshot_id='latest', after=None):
        """One page of the manifest, as the app sends it: the snapshot, its
        next ranges (name, kind, count, size, sha256, ...) and ``next``,
        the cursor to send as ``after`` for the page after it (None after
        the last). ``manifest_pages`` checks the pages; trust none unchecked.
        """
        return self._snapshot_call(
            snapshot_id, 'GET', '/manifest',
            params={} if after is None else {'after': after})

    def manifest_pages(self, snapshot_id='latest'):
        """The manifest's entries, a page fetched and checked whole before
        any of its entries is used (``manifest.ManifestPages``)."""
        from .manifest import ManifestPages
        return ManifestPages(self.manifest, snapshot_id)

    def fetch_range(self, snapshot_id, entry, path, progress=None):
        """Download a range of the manifest to ``path`` and check it
        (``fetch.fetch_range``)."""
        from .fetch import fetch_range  # the SDK: for downloads alone
        return fetch_range(self, snapshot_id, entry, path, progress)

    def upload(self, records, batch_bytes=None, progress=None):
        """Put encoded entities through the upload endpoint; return the count.

        Batches stay under ``batch_bytes`` (default ``wire.BATCH_BYTES``);
        a batch is retried as a whole, as putting it twice does no harm.
        """
        from . import wire
        progress = progress or quiet
        count = 0
        for body, size in wire.batches(records, batch_bytes):
            put = self.json('POST', '/lovely.gae/upload', data=body,
                            headers={'Content-Type': wire.CONTENT_TYPE},
                            shape=shapes.UPLOADED)['put']
            if put != size:  # not the app's answer
                raise DownloadError(
                    '%s/lovely.gae/upload answered an upload of %d entities '
                    'with %d, not the count it put' % (self.url, size, put))
            count += put
            progress('batch', entities=size, bytes=len(body))
        return count
