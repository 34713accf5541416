"""What a task is: its fields (one schema, from which a task is written as
an ``EntityProto`` and read back), the functions a task may name
(registered, as huey registers its tasks), and how a call becomes a task.

``taskstore`` keeps tasks, ``async_`` runs them; its names for all of this
are the public ones.
"""
import datetime
import enum
import hashlib
import uuid

from google.appengine.api import datastore_types
from google.appengine.datastore import entity_bytes_pb2 as entity_pb2

from . import defaults, entities
from .base import utcnow
from .exceptions import LovelyGaeError, TaskError
from .serializers import default_serializer

__all__ = ['KIND', 'EPOCH', 'MAX_PAYLOAD', 'MAX_ERROR', 'Status', 'Field',
           'FIELDS', 'Task', 'micros', 'reference', 'dotted_name', 'task', 'register',
           'resolve', 'make_task']

KIND = 'LovelyGaeTask'

#: Failed tasks, and only they, have ``due=None``; a range that starts here
#: never matches them.
EPOCH = datetime.datetime(1970, 1, 1)

#: Bytes of serialized arguments a task may have: a leased task is stored
#: again inside its lease's entity, which must stay below the datastore's
#: 1,048,572 bytes per entity too.
MAX_PAYLOAD = 1000000

#: Characters of its arguments ``Task.describe`` shows at most.
DESCRIBED = 60

#: Characters of a failed try's error a task keeps (its start and its end):
#: the error is stored with the task, which must still fit an entity.
MAX_ERROR = 4000

_MICROSECOND = datetime.timedelta(microseconds=1)


def micros(when):
    """A naive UTC datetime as the datastore stores it."""
    return (when - EPOCH) // _MICROSECOND


def reference(name, kind=KIND):
    """The ``Reference`` of the library's entity ``name`` of ``kind``: what
    ``entities.ref`` makes of its ``db.Key``, without one."""
    ref = entity_pb2.Reference(app=datastore_types.ResolveAppId(None),
                               name_space=defaults.NAMESPACE)
    ref.path.element.add(type=kind, name=name)
    return ref


class Status(str, enum.Enum):
    QUEUED = 'queued'
    FAILED = 'failed'


def _when(value):
    return EPOCH + datetime.timedelta(microseconds=value)


class Field:
    """A stored field of a task: how its value is written and read back.

    An indexed field is always stored, a null too, so that queries find
    every task by it; the others only while they differ from their default
    (a missing one reads as its default).
    """

    #: ``how``: the ``PropertyValue`` field, encode, decode, meaning.
    HOW = {'str': ('stringValue', str.encode, bytes.decode, None),
           'text': ('stringValue', str.encode, bytes.decode,
                    entity_pb2.Property.TEXT),
           'int': ('int64Value', int, int, None),
           'float': ('doubleValue', float, float, None),
           'when': ('int64Value', micros, _when,
                    entity_pb2.Property.GD_WHEN)}

    def __init__(self, name, how, default=None, indexed=False):
        self.name, self.default, self.indexed = name, default, indexed
        self.attr, self.encode, self.decode, self.meaning = self.HOW[how]

    def write(self, pb, value):
        """Add ``value`` to the properties of ``pb``, as it is stored."""
        if not self.indexed and value == self.default:
            return
        prop = (pb.property if self.indexed else pb.raw_property).add()
        prop.name, prop.multiple = self.name, False
        if value is None:
            return  # a null, which has no meaning
        if self.meaning:
            prop.meaning = self.meaning
        setattr(prop.value, self.attr, self.encode(value))

    def read(self, value):
        """The value of a stored ``PropertyValue`` (a null reads as None)."""
        if not value.HasField(self.attr):
            return None
        return self.decode(getattr(value, self.attr))


#: Everything a task stores. ``due`` is None once it failed for good;
#: while a lease holds it, ``due`` is the lease's end and ``lease`` its name.
FIELDS = (
    Field('due', 'when', indexed=True),
    Field('func', 'str'),
    Field('payload', 'text'),
    Field('on_failure', 'str'),
    Field('attempts', 'int', 0),
    Field('max_attempts', 'int'),
    Field('retry_delay', 'float'),
    Field('lease', 'str'),
    Field('error', 'text'),
    Field('created', 'when'),
)
_BY_NAME = {field.name: field for field in FIELDS}


class Task:
    """One piece of work: queued, leased (held by a worker) or failed.

    ``name`` is its key name; the other attributes are ``FIELDS``.
    """

    __slots__ = ('name',) + tuple(_BY_NAME)

    def __init__(self, name, **values):
        self.name = name
        for field in FIELDS:
            setattr(self, field.name, values.pop(field.name, field.default))
        if values:
            raise TypeError('a task has no field %s' % ', '.join(values))

    def key(self):
        return entities.key(reference(self.name))

    @property
    def status(self):
        """``'failed'`` once it used up its attempts, else ``'queued'``."""
        return (Status.FAILED if self.due is None else Status.QUEUED).value

    def to_proto(self):
        """The entity of the task as stored (``from_proto`` reads it back)."""
        pb = entity_pb2.EntityProto()
        pb.key.CopyFrom(reference(self.name))
        pb.entity_group.element.add().CopyFrom(pb.key.path.element[0])
        for field in FIELDS:
            field.write(pb, getattr(self, field.name))
        return pb

    @classmethod
    def from_proto(cls, pb):
        """The task an entity written by ``to_proto`` stores."""
        task = cls(pb.key.path.element[-1].name)
        for props in (pb.property, pb.raw_property):
            for prop in props:
                field = _BY_NAME.get(prop.name)
                if field is not None:
                    setattr(task, prop.name, field.read(prop.value))
        return task

    def arguments(self):
        """``(args, kwargs)`` as the function will receive them."""
        data = default_serializer.loads(self.payload or '{}')
        return data.get('args', []), data.get('kwargs', {})

    def failure_arguments(self):
        return default_serializer.loads(self.payload or '{}').get(
            'on_failure_args', [])

    def describe(self, limit=DESCRIBED):
        """The call it makes, as people read it: ``purge_snapshot(605)``;
        the arguments cut short past ``limit`` characters."""
        try:
            args, kwargs = self.arguments()
        except LovelyGaeError:
            text = '?'  # unreadable arguments: the worker says why
        else:
            text = ', '.join([repr(arg) for arg in args] + [
                '%s=%r' % item for item in sorted(kwargs.items())])
        if len(text) > limit:
            text = text[:limit - 3] + '...'
        return '%s(%s)' % ((self.func or '?').rpartition(':')[2], text)

    def __repr__(self):
        return '<Task %s %s attempts=%s>' % (self.func, self.status,
                                             self.attempts)


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
    if size > MAX_PAYLOAD:
        raise TaskError('the arguments of task %s are %d bytes; at most %d '
                        'fit' % (name, size, MAX_PAYLOAD))
    if once_only:
        digest = hashlib.sha256(('%s\0%s' % (name, payload)).encode())
        key_name = '%s#%s' % (name, digest.hexdigest()[:40])
    else:
        key_name = uuid.uuid4().hex
    now = utcnow()
    return Task(
        key_name, func=name, payload=payload, created=now,
        due=now + datetime.timedelta(seconds=countdown),
        max_attempts=max_attempts or defaults.MAX_ATTEMPTS,
        retry_delay=float(defaults.RETRY_DELAY if retry_delay is None
                          else retry_delay),
        on_failure=dotted_name(on_failure) if on_failure else None)
