"""What every entity of the library's own shares: its namespace, its clock,
its retries, and the properties and queries the models build on."""
import contextvars
import datetime
import logging
import time

from google.appengine.api import datastore, datastore_errors
from google.appengine.datastore import datastore_rpc
from google.appengine.ext import db
from google.appengine.runtime import apiproxy_errors

from . import defaults
from .serializers import default_serializer

__all__ = ['put_first', 'LibraryModel', 'TRANSIENT_ERRORS', 'WIDE', 'retrying',
           'transaction', 'after_commit', 'before_commit',
           'get_all', 'put_all', 'delete_all', 'utcnow',
           'JsonProperty', 'KeyProperty', 'prefixed']

log = logging.getLogger(__name__)

#: Datastore errors worth another try: the same call may well succeed.
TRANSIENT_ERRORS = (
    apiproxy_errors.DeadlineExceededError, datastore_errors.Timeout,
    datastore_errors.InternalError, datastore_errors.TransactionFailedError,
    datastore_errors.CommittedButStillApplying)


def utcnow():
    """Naive UTC, as ``db.DateTimeProperty`` stores it."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


#: Calls ``retrying`` makes at most.
_TRIES = 5


def retrying(func, *args, **kwargs):
    """Call ``func``, again after a short pause on a transient error.

    Only for calls that may safely run twice: a commit that timed out may
    have been applied all the same. Inside a transaction it calls once: the
    transaction's owner decides what a failure means.
    """
    tries = 1 if datastore.IsInTransaction() else _TRIES
    for attempt in range(1, tries + 1):
        try:
            return func(*args, **kwargs)
        except TRANSIENT_ERRORS as error:
            if attempt == tries:
                raise
            log.info('retrying %s after %r', getattr(func, '__name__', func),
                     error)
            time.sleep(0.01 * 2 ** attempt)


#: Calls cut by count and bytes only: the SDK's default of 10 entity groups
#: per call would cut 500 of the library's entities (each a group of its
#: own) into 50 calls.
WIDE = datastore_rpc.Configuration(max_entity_groups_per_rpc=1000)


def get_all(keys):
    """``db.get`` of many keys in as few calls as the limits allow."""
    return retrying(db.get, keys, config=WIDE)


def put_all(models):
    """``db.put`` of many models in as few calls as the limits allow."""
    return retrying(db.put, models, config=WIDE)


def delete_all(keys):
    """``db.delete`` of many keys in as few calls as the limits allow."""
    return retrying(db.delete, keys, config=WIDE)


#: ``(before, after)``: what to do at the end of the transaction that
#: ``transaction`` runs, inside it, and once it has committed.
_hooks = contextvars.ContextVar('hooks', default=None)


def transaction(func, *args, **kwargs):
    """Run ``func`` in a cross-group transaction, retried on contention.

    A transient error retries the whole transaction, so ``func`` must read
    what it changes inside it. Joins the caller's transaction when there is
    one, so that work written by ``func`` commits or rolls back with it.
    """
    if datastore.IsInTransaction():
        return func(*args, **kwargs)
    before, after = {}, []

    def attempt():
        before.clear()  # an attempt that failed did not happen
        after.clear()
        reset = _hooks.set((before, after))
        try:
            result = func(*args, **kwargs)
            for hook in before.values():
                hook()
            return result
        finally:
            _hooks.reset(reset)
    options = db.create_transaction_options(xg=True, retries=20)
    result = retrying(db.run_in_transaction_options, options, attempt)
    for hook in after:
        hook()
    return result


def after_commit(hook):
    """Call ``hook()`` once the current transaction has committed.

    Outside a transaction, and in one that ``transaction`` did not start
    (whose commit it cannot see), it is called at once.
    """
    hooks = _hooks.get()
    if hooks is None or not datastore.IsInTransaction():
        hook()
    else:
        hooks[1].append(hook)


def before_commit(name, hook):
    """Call ``hook()`` at the end of the current transaction, inside it.

    Returns the hook that will be called for ``name``: the first one asked
    for. None if no transaction that ``transaction`` started is running,
    and nothing will be called.
    """
    hooks = _hooks.get()
    if hooks is None or not datastore.IsInTransaction():
        return None
    return hooks[0].setdefault(name, hook)


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


class JsonProperty(db.Property):
    """A dict stored as unindexed JSON text (``db.Key`` values allowed)."""

    data_type = dict

    def __init__(self, **kwds):
        super().__init__(indexed=False, **kwds)

    def default_value(self):
        return {}

    def get_value_for_datastore(self, model_instance):
        value = super().get_value_for_datastore(model_instance)
        return db.Text(default_serializer.dumps(value or {}))

    def make_value_from_datastore(self, value):
        return default_serializer.loads(value) if value else {}


class KeyProperty(db.Property):
    """An unindexed ``db.Key`` (None is an open end of a range)."""

    data_type = db.Key

    def __init__(self, **kwds):
        super().__init__(indexed=False, **kwds)


def put_first(model):
    """Store ``model`` unless an entity has its key; return the one stored.

    A task that runs twice decides twice, maybe otherwise (the data may
    have changed in between): the first decision stored is the one kept.
    """
    def first():
        stored = db.get(model.key())
        if stored is None:
            model.put()
            return model
        return stored
    return transaction(first)


def prefixed(model, prefix, keys_only=False):
    """Entities of ``model`` whose key name starts with ``prefix``."""
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    query = model.all(keys_only=keys_only).filter(
        '__key__ >=', model.key_for(prefix)).filter(
        '__key__ <', model.key_for(upper))
    return query.run(batch_size=defaults.QUERY_BATCH)

