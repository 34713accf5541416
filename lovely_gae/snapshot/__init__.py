"""Snapshots of App Engine datastore kinds: create, restore, download.

The package imports nothing itself, so that a client of a remote app
(``transfer.remote``, ``waiting``, ``progress``: ``lovely-gae --url``)
starts without the SDK. ``getApp`` and ``HANDLER_TUPLES`` are imported
when first asked for; the modules that define tasks come with ``api``
(``api.TASK_MODULES``), which every way to start or run work imports.
"""

__all__ = ['getApp', 'HANDLER_TUPLES']


def getApp(token=None, app_engine_headers=None):
    """The WSGI app serving ``/lovely.gae/...`` (the seed's entry point).

    ``token`` (else ``$LOVELY_GAE_TOKEN``) is the bearer token callers must
    present. App Engine's cron and queue headers let a request in without
    it only on App Engine, and never with ``app_engine_headers=False``
    (token-only mode); see ``docs/security.rst``.
    """
    from .app.handlers import HANDLER_TUPLES, SnapshotApp
    return SnapshotApp(HANDLER_TUPLES, token=token,
                       app_engine_headers=app_engine_headers)


def __getattr__(name):
    if name == 'HANDLER_TUPLES':
        from .app.handlers import HANDLER_TUPLES
        return HANDLER_TUPLES
    raise AttributeError('module %r has no attribute %r' % (__name__, name))
