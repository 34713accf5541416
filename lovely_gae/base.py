"""What every entity of the library's own shares: its namespace and its clock."""
import datetime
import logging
import time

from google.appengine.api import datastore, datastore_errors
from google.appengine.ext import db
from google.appengine.runtime import apiproxy_errors

from . import defaults

__all__ = ['LibraryModel', 'TRANSIENT_ERRORS', 'retrying', 'transaction',
           'utcnow']

log = logging.getLogger(__name__)

#: Datastore errors worth another try: the same call may well succeed.
TRANSIENT_ERRORS = (
    apiproxy_errors.DeadlineExceededError, datastore_errors.Timeout,
    datastore_errors.InternalError, datastore_errors.TransactionFailedError,
    datastore_errors.CommittedButStillApplying)


def utcnow():
    """Naive UTC, as ``db.DateTimeProperty`` stores it."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def retrying(func, *args, tries=5, **kwargs):
    """Call ``func``, again after a short pause on a transient error.

    Only for calls that may safely run twice: a commit that timed out may
    have been applied all the same. Inside a transaction it calls once: the
    transaction's owner decides what a failure means.
    """
    if datastore.IsInTransaction():
        tries = 1
    for attempt in range(1, tries + 1):
        try:
            return func(*args, **kwargs)
        except TRANSIENT_ERRORS as error:
            if attempt == tries:
                raise
            log.info('retrying %s after %r', getattr(func, '__name__', func),
                     error)
            time.sleep(0.01 * 2 ** attempt)


def transaction(func, *args, **kwargs):
    """Run ``func`` in a cross-group transaction, retried on contention.

    A transient error retries the whole transaction, so ``func`` must read
    what it changes inside it. Joins the caller's transaction when there is
    one, so that work written by ``func`` commits or rolls back with it.
    """
    if datastore.IsInTransaction():
        return func(*args, **kwargs)
    options = db.create_transaction_options(xg=True, retries=20)
    return retrying(db.run_in_transaction_options, options, func, *args,
                    **kwargs)


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
