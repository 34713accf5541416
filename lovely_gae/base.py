"""What every entity of the library's own shares: its namespace and its clock."""
import datetime

from google.appengine.api import datastore
from google.appengine.ext import db

from . import defaults

__all__ = ['LibraryModel', 'transaction', 'utcnow']


def utcnow():
    """Naive UTC, as ``db.DateTimeProperty`` stores it."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def transaction(func, *args, **kwargs):
    """Run ``func`` in a cross-group transaction, retried on contention.

    Joins the caller's transaction when there is one, so that work written
    by ``func`` commits or rolls back with it.
    """
    if datastore.IsInTransaction():
        return func(*args, **kwargs)
    options = db.create_transaction_options(xg=True, retries=20)
    return db.run_in_transaction_options(options, func, *args, **kwargs)


class LibraryModel(db.Model):
    """A model whose entities live in ``defaults.NAMESPACE``.

    Whatever namespace the application has set, the library's bookkeeping
    stays in one place of its own and out of the application's kinds.
    """

    def __init__(self, parent=None, key_name=None, _app=None, **kwds):
        if (_app is None and parent is None and 'key' not in kwds
                and '_from_entity' not in kwds):
            _app = (None, defaults.NAMESPACE)
        super().__init__(parent, key_name, _app, **kwds)

    @classmethod
    def key_for(cls, id_or_name):
        return db.Key.from_path(cls.kind(), id_or_name,
                                namespace=defaults.NAMESPACE)

    @classmethod
    def get_by_key_name(cls, key_names, parent=None, **kwargs):
        if parent is not None or isinstance(key_names, (list, tuple)):
            raise NotImplementedError('use db.get with key_for()')
        return db.get(cls.key_for(key_names), **kwargs)

    @classmethod
    def get_by_id(cls, ids, parent=None, **kwargs):
        if parent is not None or isinstance(ids, (list, tuple)):
            raise NotImplementedError('use db.get with key_for()')
        return db.get(cls.key_for(int(ids)), **kwargs)

    @classmethod
    def all(cls, **kwds):
        kwds.setdefault('namespace', defaults.NAMESPACE)
        return super().all(**kwds)
