"""A task queue whose tasks are entities in the datastore.

A task is the dotted name of a function plus its serialized arguments. It
survives a restart, can be written in the same transaction as the data it
belongs to, and runs at least once: a task that raises is retried with
backoff, and a worker that dies gives its task back when its lease expires.
``run_tasks`` is the one code path that runs tasks, for tests, the CLI
worker and the HTTP worker alike.
"""
import datetime
import enum
import hashlib
import importlib
import logging
import time
import traceback
import uuid

from google.appengine.ext import db

from . import defaults, taskstore
from .base import LibraryModel, transaction, utcnow
from .exceptions import TaskError
from .serializers import default_serializer

__all__ = ['Status', 'Task', 'defer', 'defer_many', 'make_task', 'get_tasks',
           'count_tasks', 'get_failed_tasks', 'run_tasks', 'dotted_name', 'resolve']

log = logging.getLogger(__name__)

# ``due`` is the one indexed property of a task: queued and failed tasks
# are found by it, with the single-property index every app has.
_EPOCH = taskstore.EPOCH


class Status(str, enum.Enum):
    QUEUED = 'queued'
    FAILED = 'failed'


class Task(LibraryModel):
    """One piece of work; a queued task whose lease runs is simply not due."""

    func = db.StringProperty(indexed=False, required=True)
    payload = db.TextProperty()
    on_failure = db.StringProperty(indexed=False)
    # Older tasks have it indexed; nothing queries it any more.
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


def resolve(name):
    """The function a dotted name stands for."""
    module_name, _, attr = name.partition(':')
    try:
        obj = importlib.import_module(module_name)
        for part in attr.split('.'):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise TaskError('cannot find task function %r' % name) from exc
    return obj


def make_task(func, args=(), kwargs=None, once_only=True, countdown=0,
              max_attempts=None, retry_delay=None, on_failure=None,
              on_failure_args=()):
    """The unsaved ``Task`` that ``defer`` stores (see there)."""
    name = dotted_name(func)
    data = {'args': list(args), 'kwargs': kwargs or {}}
    if on_failure_args:
        data['on_failure_args'] = list(on_failure_args)
    payload = default_serializer.dumps(data)
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


def defer(func, args=(), kwargs=None, once_only=True, countdown=0,
          max_attempts=None, retry_delay=None, on_failure=None,
          on_failure_args=()):
    """Queue ``func(*args, **kwargs)`` and return its ``Task``.

    With ``once_only`` the task's key name is derived from function and
    arguments, so deferring the same work while it is queued leaves one
    task: the put is one write, no transaction, and if it lands on a task
    that is running, that task may run once more, which tasks must bear
    anyway. After the last attempt, ``on_failure(message,
    *on_failure_args)`` runs in the transaction that marks the task failed.
    Called inside a transaction, the task commits with it.
    """
    task = make_task(func, args, kwargs, once_only, countdown, max_attempts,
                     retry_delay, on_failure, on_failure_args)
    taskstore.put([taskstore.entity_of(task)])
    return task


def defer_many(tasks):
    """Store tasks made by ``make_task`` with as few writes as possible."""
    taskstore.put([taskstore.entity_of(task) for task in tasks])


def get_tasks():
    """The tasks waiting to run (or running), oldest due first."""
    return sorted(Task.all().filter('due >=', _EPOCH),
                  key=lambda t: (t.due, t.key().name()))


def count_tasks(limit=1000):
    """How many tasks wait (or run), counted up to ``limit``."""
    return Task.all(keys_only=True).filter('due >=', _EPOCH).count(
        limit=limit)


def get_failed_tasks():
    """Tasks that used up their attempts; each keeps its last error."""
    return list(Task.all().filter('due =', None))


def _next_due():
    first = Task.all().filter('due >=', _EPOCH).order('due').get()
    return first.due if first else None


def run_tasks(recursive=False, wait=False, deadline=None, max_tasks=None,
              lease_seconds=None):
    """Run the tasks that are due now and return how many ran.

    ``recursive`` also runs the tasks those tasks queue, until none is due;
    ``wait`` (with ``recursive``) also waits for tasks due later, such as
    retries, until the queue is empty. ``deadline`` (seconds) and
    ``max_tasks`` bound the call; what is left stays queued.
    """
    lease_seconds = lease_seconds or defaults.LEASE_SECONDS
    stop_at = None if deadline is None else time.monotonic() + deadline

    def out_of_budget():
        return ((max_tasks is not None and ran >= max_tasks) or
                (stop_at is not None and time.monotonic() >= stop_at))
    ran = 0
    while True:
        ran_in_pass = 0
        for refs in taskstore.due_batches(utcnow()):
            if out_of_budget():
                return ran
            leased = taskstore.lease(refs, uuid.uuid4().hex, lease_seconds)
            done = []
            for index, task in enumerate(leased):
                if out_of_budget():
                    transaction(_release, leased[index:])
                    break
                if _run_one(task):
                    done.append(task.ref)
                ran += 1
                ran_in_pass += 1
            taskstore.delete(done)
            if out_of_budget():
                return ran
        if not recursive or (ran_in_pass == 0 and not wait):
            return ran
        if ran_in_pass == 0:
            next_due = _next_due()
            if next_due is None:
                return ran
            pause = min(max((next_due - utcnow()).total_seconds(), 0), 1.0)
            if stop_at is not None:
                pause = min(pause, stop_at - time.monotonic())
                if pause <= 0:
                    return ran
            time.sleep(pause)


def _lease(keys, token, lease):
    """Lease the due tasks of ``keys`` (``db.Key``) for ``lease``."""
    return taskstore.lease([key._ToPb() for key in keys], token,
                           lease.total_seconds())


def _release(tasks):
    """Give back leased tasks that this worker will not run after all."""
    current = db.get([task.key() for task in tasks])
    back = []
    for task, now in zip(tasks, current):
        if now is not None and now.lease == task.lease:
            now.due = utcnow()
            now.lease = None
            now.attempts -= 1
            back.append(now)
    db.put(back)


def _run_one(task):
    """Run a leased task; True if it succeeded (and may be deleted)."""
    try:
        func = resolve(task.func)
        args, kwargs = _arguments(task.payload)
        func(*args, **kwargs)
    except Exception as exc:
        error = ''.join(traceback.format_exception_only(type(exc), exc))
        log.warning('task %s failed (attempt %d of %d): %s', task.func,
                    task.attempts, task.max_attempts, error.strip(),
                    exc_info=True)
        transaction(_settle_failure, task.key(), task.lease, error.strip())
        return False
    return True


def _settle_failure(key, token, error):
    task = db.get(key)
    if task is None or task.lease != token:
        return
    task.error = error
    if task.attempts < task.max_attempts:
        delay = min(task.retry_delay * 2 ** (task.attempts - 1),
                    defaults.MAX_RETRY_DELAY)
        task.due = utcnow() + datetime.timedelta(seconds=delay)
        task.put()
        return
    task.status = Status.FAILED.value
    task.due = None
    task.put()
    log.error('task %s failed for good after %d attempts: %s', task.func,
              task.attempts, error)
    if task.on_failure:
        message = '%s failed after %d attempts: %s' % (
            task.func, task.attempts, error)
        try:
            resolve(task.on_failure)(message, *task.failure_arguments())
        except Exception:
            log.exception('failure handler %s of task %s raised',
                          task.on_failure, task.func)
