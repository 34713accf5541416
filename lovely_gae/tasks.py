"""What a task is: the ``Task`` entity, the functions a task may name
(registered, as huey registers its tasks), and how a call becomes a task.

``async_`` stores, runs and retries them; its names for all of this are
the public ones.
"""
import datetime
import enum
import hashlib
import uuid

from google.appengine.ext import db

from . import defaults, taskstore
from .base import LibraryModel, utcnow
from .exceptions import TaskError
from .serializers import default_serializer

__all__ = ['Status', 'Task', 'dotted_name', 'task', 'register', 'resolve',
           'make_task']


class Status(str, enum.Enum):
    QUEUED = 'queued'
    FAILED = 'failed'


class Task(LibraryModel):
    """One piece of work: queued, failed, or (as leased) held by a lease."""

    func = db.StringProperty(indexed=False, required=True)
    payload = db.TextProperty()
    on_failure = db.StringProperty(indexed=False)
    status = db.StringProperty(default=Status.QUEUED.value, indexed=False)
    due = db.DateTimeProperty()
    attempts = db.IntegerProperty(default=0, indexed=False)
    max_attempts = db.IntegerProperty(indexed=False)
    retry_delay = db.FloatProperty(indexed=False)
    lease = db.StringProperty(indexed=False)
    error = db.TextProperty()
    created = db.DateTimeProperty(auto_now_add=True, indexed=False)

    @classmethod
    def kind(cls):
        return taskstore.KIND

    def arguments(self):
        """``(args, kwargs)`` as the function will receive them."""
        return _arguments(self.payload)

    def failure_arguments(self):
        return default_serializer.loads(self.payload or '{}').get(
            'on_failure_args', [])

    def __repr__(self):
        return '<Task %s %s attempts=%s>' % (self.func, self.status,
                                             self.attempts)


def _arguments(payload):
    data = default_serializer.loads(payload or '{}')
    return data.get('args', []), data.get('kwargs', {})


def dotted_name(func):
    """``module:qualname`` of a module-level function (or the name given)."""
    if isinstance(func, str):
        if ':' not in func:
            raise TaskError('task function %r is not module:name' % func)
        return func
    module = getattr(func, '__module__', None)
    qualname = getattr(func, '__qualname__', '')
    if not module or '<' in qualname:
        raise TaskError('task function %r has no importable name' % (func,))
    return '%s:%s' % (module, qualname)


#: The functions tasks may name, by dotted name.
_registry = {}


def task(func):
    """Register ``func``, a module-level function, as one a task may name.

    Use it as a decorator where the function is defined, so that a worker
    that imports the module knows it.
    """
    _registry[dotted_name(func)] = func
    return func


def register(*funcs):
    """Register functions defined elsewhere (``task`` for each)."""
    for func in funcs:
        task(func)


def resolve(name):
    """The registered function a dotted name stands for."""
    try:
        return _registry[name]
    except KeyError:
        raise TaskError('task function %r is not registered (see '
                        'lovely_gae.async_.task)' % (name,)) from None


def make_task(func, args=(), kwargs=None, once_only=True, countdown=0,
              max_attempts=None, retry_delay=None, on_failure=None,
              on_failure_args=()):
    """The unsaved ``Task`` that ``defer`` stores (see there)."""
    name = dotted_name(func)
    for registered in (name, on_failure and dotted_name(on_failure)):
        if registered:
            resolve(registered)
    data = {'args': list(args), 'kwargs': kwargs or {}}
    if on_failure_args:
        data['on_failure_args'] = list(on_failure_args)
    payload = default_serializer.dumps(data)
    size = len(payload.encode('utf-8'))
    if size > taskstore.MAX_PAYLOAD:
        raise TaskError('the arguments of task %s are %d bytes; at most %d '
                        'fit' % (name, size, taskstore.MAX_PAYLOAD))
    if once_only:
        digest = hashlib.sha256(('%s\0%s' % (name, payload)).encode())
        key_name = '%s#%s' % (name, digest.hexdigest()[:40])
    else:
        key_name = uuid.uuid4().hex
    return Task(
        key_name=key_name, func=name, payload=payload,
        due=utcnow() + datetime.timedelta(seconds=countdown),
        max_attempts=max_attempts or defaults.MAX_ATTEMPTS,
        retry_delay=float(defaults.RETRY_DELAY if retry_delay is None
                          else retry_delay),
        on_failure=dotted_name(on_failure) if on_failure else None)
