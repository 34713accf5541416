"""The WSGI handlers of the snapshot app, on WebOb.

Each handler takes a ``Request`` and returns a ``Response`` or raises a
``webob.exc`` response carrying a one-line reason.
"""
from webob import Response, exc
from webob.dec import wsgify

from ..exceptions import InvalidInput
from . import api
from .access import check_access, refuse

__all__ = ['CreateSnapshotHandler', 'HANDLER_TUPLES', 'SnapshotApp']


def text(body, status=200):
    return Response(body, status=status, content_type='text/plain',
                    charset='utf-8')


def CreateSnapshotHandler(request):
    """GET (as cron calls it) or POST: start a snapshot.

    ``kinds`` may repeat and keeps its order (none: every kind);
    ``batchsize`` and ``namespace`` are optional.
    """
    if request.method not in ('GET', 'POST'):
        raise refuse(exc.HTTPMethodNotAllowed, 'use GET or POST',
                     headers={'Allow': 'GET, POST'})
    params = request.params
    kinds = params.getall('kinds') or None
    try:
        snap = api.create_snapshot(kinds=kinds,
                                   batchsize=params.get('batchsize'),
                                   namespace=params.get('namespace'))
    except InvalidInput as error:
        raise refuse(exc.HTTPBadRequest, str(error)) from error
    return text('Created Snapshot %d\nKinds: %r' % (snap.id, snap.kinds))


HANDLER_TUPLES = [
    ('/lovely.gae/snapshot.CreateSnapshotHandler', CreateSnapshotHandler),
]


class SnapshotApp:
    """Routes paths to handlers after the access check (``access.py``)."""

    def __init__(self, handlers=None, token=None):
        self.routes = dict(HANDLER_TUPLES if handlers is None else handlers)
        self.token = token

    @wsgify
    def __call__(self, request):
        handler = self.routes.get(request.path_info)
        if handler is None:
            raise refuse(exc.HTTPNotFound, 'no such page: %s'
                         % request.path_info)
        check_access(request, self.token)
        return handler(request)
