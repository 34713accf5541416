"""Snapshots of App Engine datastore kinds: create, restore, download."""
from .handlers import HANDLER_TUPLES, SnapshotApp

__all__ = ['getApp', 'HANDLER_TUPLES']


def getApp(token=None):
    """The WSGI app serving ``/lovely.gae/...`` (the seed's entry point).

    ``token`` (else ``$LOVELY_GAE_TOKEN``) is the bearer token callers must
    present; see ``docs/security.rst``.
    """
    return SnapshotApp(HANDLER_TUPLES, token=token)
