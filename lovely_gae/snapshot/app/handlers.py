"""The snapshot app: its routing table, its router, and the seed's handler.

``HANDLER_TUPLES`` is the public routing table, ``(path, handler)`` pairs.
A path may hold ``<name>`` (one path segment) or ``<name:path>`` (the rest
of the path, slashes included); the handler finds the values in
``request.urlvars``. Every request passes the access check first, so a
refused caller learns nothing, not even which paths exist (but for the
page's login form, ``page.py``), and has not a byte of its body read; then its path must be UTF-8, and its body fit the
handler's ``max_body`` (``web.allow``) before anything reads it.
"""
import re
from urllib.parse import quote

from webob import exc
from webob.dec import wsgify

from . import manage, data as transfer, page, worker
from .access import LOOPBACK, refuse
from .web import MAX_FORM_BYTES, allow, check_body, read_params, text

__all__ = ['CreateSnapshotHandler', 'HANDLER_TUPLES', 'SnapshotApp']


@allow('GET', 'POST', writes=True)
def CreateSnapshotHandler(request):
    """GET (as cron calls it) or POST: start a snapshot.

    ``kinds`` may repeat and keeps its order (none: every kind);
    ``batchsize`` and ``namespace`` are optional.
    """
    snap = manage.create_from(request)
    return text('Created Snapshot %d\nKinds: %r' % (snap.id, snap.kinds))


HANDLER_TUPLES = [
    ('/lovely.gae/snapshot.CreateSnapshotHandler', CreateSnapshotHandler),
    ('/lovely.gae/snapshots', manage.snapshots),
    ('/lovely.gae/snapshots/<id>', manage.show),
    ('/lovely.gae/snapshots/<id>/restore', manage.restore),
    ('/lovely.gae/snapshots/<id>/restores/<restore>', manage.show_restore),
    ('/lovely.gae/snapshots/<id>/delete', manage.delete),
    ('/lovely.gae/prune', manage.prune),
    ('/lovely.gae/snapshots/<id>/manifest', transfer.manifest),
    ('/lovely.gae/snapshots/<id>/ranges/<name:path>', transfer.range_bytes),
    ('/lovely.gae/upload', transfer.upload),
    ('/lovely.gae/worker', worker.run),
] + page.ROUTES

_PLACEHOLDER = re.compile(r'<(\w+)(:path)?>')


def compile_path(path):
    """The regular expression a routing path stands for."""
    pattern, end = '', 0
    for match in _PLACEHOLDER.finditer(path):
        pattern += re.escape(path[end:match.start()])
        pattern += '(?P<%s>%s)' % (match.group(1),
                                   '.+' if match.group(2) else '[^/]+')
        end = match.end()
    return re.compile(pattern + re.escape(path[end:]) + r'\Z')


class SnapshotApp:
    """Routes paths to handlers after the access check (``access.py``)."""

    def __init__(self, handlers, token=None, app_engine_headers=None):
        self.routes = [(compile_path(path), handler)
                       for path, handler in handlers]
        self.token = token
        self.app_engine_headers = app_engine_headers

    @wsgify
    def __call__(self, request):
        # The access check, and the page's session cookie (``page.py``).
        way_in = page.admit(request, self.token, self.app_engine_headers)
        try:
            path = request.path_info  # WebOb decodes it on every look
        except UnicodeDecodeError:
            raw = request.environ['PATH_INFO'].encode('latin-1', 'replace')
            raise refuse(exc.HTTPBadRequest, 'the path is not UTF-8: %s'
                         % quote(raw[:200], safe='/')) from None
        for pattern, handler in self.routes:
            match = pattern.match(path)
            if match:
                break
        else:
            raise refuse(exc.HTTPNotFound, 'no such page: %s' % path)
        page.may_call(request, way_in, handler)
        limit = getattr(handler, 'max_body', MAX_FORM_BYTES)
        check_body(request, limit)
        # What is let in is small enough to read into memory; WebOb would
        # copy a form of over 10 KiB into a temporary file it never closes.
        request.request_body_tempfile_limit = limit
        read_params(request)
        if (way_in == LOOPBACK and request.method == 'GET'
                and getattr(handler, 'writes_on_get', False)):
            # Any web page can make a browser send a GET (an image, a
            # link), and old browsers say nothing of where it came from.
            raise refuse(exc.HTTPForbidden, 'without a token, a GET that '
                         'writes is refused over HTTP: use POST or a token')
        request.urlvars = match.groupdict()
        return handler(request)
