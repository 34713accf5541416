"""Snapshots of App Engine datastore kinds: create, restore, download."""
from .work import deleting, passes, plan, ranges, restore, shards
from .app.handlers import HANDLER_TUPLES, SnapshotApp

__all__ = ['getApp', 'HANDLER_TUPLES']

#: Every module that defines tasks: imported with the package, so that a
#: process that runs its tasks (a worker that never started one) has them
#: registered. ``restore``, ``plan`` and ``deleting`` also do the work of
#: ``Snapshot.restore`` and ``Snapshot.delete`` (``models.ACTIONS``).
TASK_MODULES = (deleting, passes, plan, ranges, restore, shards)


def getApp(token=None, app_engine_headers=None):
    """The WSGI app serving ``/lovely.gae/...`` (the seed's entry point).

    ``token`` (else ``$LOVELY_GAE_TOKEN``) is the bearer token callers must
    present. App Engine's cron and queue headers let a request in without
    it only on App Engine, and never with ``app_engine_headers=False``
    (token-only mode); see ``docs/security.rst``.
    """
    return SnapshotApp(HANDLER_TUPLES, token=token,
                       app_engine_headers=app_engine_headers)
