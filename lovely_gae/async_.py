"""A task queue whose tasks are entities in the datastore.

A task is the dotted name of a registered function plus its serialized
arguments: a worker runs only functions registered with ``task`` (as huey
registers its tasks), so a task that data put into the queue cannot name
``os:system`` (what a task is: ``tasks``). It survives a restart, can be
written in the same transaction as the data it belongs to, and runs at least once: a task that raises is retried with
backoff, and a worker that dies gives its tasks back when its lease expires
(see ``leases``).
``run_tasks`` is the one code path that runs tasks, for tests, the CLI
worker and the HTTP worker alike.
"""
import contextvars
import datetime
import logging
import random
import threading
import time
import traceback
import uuid

from google.appengine.ext import db

from . import defaults, entities, leases, push, taskstore
from .base import after_commit, transaction, utcnow
from .tasks import (Status, Task, _arguments, dotted_name, make_task,
                    register, resolve, task)

__all__ = ['Status', 'Task', 'task', 'register', 'defer', 'defer_many',
           'make_task', 'get_tasks', 'count_tasks', 'get_failed_tasks',
           'count_leased', 'retry_failed', 'drop_failed',
           'run_tasks', 'run_in_threads', 'run_task', 'done_with_current',
           'push_again',
           'dotted_name', 'resolve']

log = logging.getLogger(__name__)

#: Key names of the tasks that the lease being run holds and will run next.
_waiting = contextvars.ContextVar('waiting', default=frozenset())
#: ``[key name, deferred again?, deleted?]`` of the task ``run_task`` runs.
_running = contextvars.ContextVar('running', default=None)
#: How early a push may come for a task (clocks differ a little).
_PUSH_SKEW = datetime.timedelta(seconds=5)



def _queued(keys_only=False):
    """Tasks waiting in the queue: ``due`` is a task's one indexed property,
    None once it has failed for good (the single-property index suffices)."""
    return Task.all(keys_only=keys_only).filter('due >=', taskstore.EPOCH)


def defer(func, args=(), kwargs=None, once_only=True, countdown=0,
          max_attempts=None, retry_delay=None, on_failure=None,
          on_failure_args=()):
    """Queue ``func(*args, **kwargs)`` and return its ``Task``.

    With ``once_only`` the task's key name is derived from function and
    arguments, so deferring the same work while it is queued leaves one
    task: the put is one write, no transaction. While a worker's lease
    holds the task, a task of that lease that defers it before it ran
    leaves it to the lease; otherwise it is queued again and may run once
    more, which tasks must bear anyway. After the last attempt,
    ``on_failure(message, *on_failure_args)`` runs in the transaction that
    marks the task failed. Called inside a transaction, the task commits
    with it.
    """
    task = make_task(func, args, kwargs, once_only, countdown, max_attempts,
                     retry_delay, on_failure, on_failure_args)
    defer_many([task])
    return task


def defer_many(tasks):
    """Store tasks made by ``make_task`` with as few writes as possible,
    and announce them to the pusher in use (``push``)."""
    waiting, running = _waiting.get(), _running.get()
    tasks = [task for task in tasks if task.key().name() not in waiting]
    taskstore.put([taskstore.entity_of(task) for task in tasks])
    by_due = {}
    for stored in tasks:
        if running is not None and stored.key().name() == running[0]:
            running[1] = True  # its run must not delete it when done
        by_due.setdefault(stored.due, []).append(stored.key().name())
    for due, names in sorted(by_due.items()):
        push.announce(names, due)


def push_again(names):
    """Push each of the stored tasks ``names`` on its own, as it is due."""
    by_due = {}
    for found in entities.get([entities.ref(Task.key_for(name))
                               for name in names]):
        if found is not None:
            task = db.model_from_protobuf(found)
            if task.due is not None:
                by_due.setdefault(task.due, []).append(task.key().name())
    for due, group in sorted(by_due.items()):
        push.announce(group, due)


def run_task(name):
    """Run the queued task with key name ``name`` if it is due: what a
    push asks for. Returns whether it ran.

    The task is read, run, and deleted: no lease, since a push hands each
    task to one worker (a task runs at least once anyway). If it fails it
    is stored again with its error, due after its backoff, and pushed.
    """
    found = entities.get([entities.ref(Task.key_for(name))])[0]
    if found is None:
        return False  # done, failed for good, or held by a lease
    task = db.model_from_protobuf(found)
    if task.due is None or task.due > utcnow() + _PUSH_SKEW:
        return False
    task.attempts += 1
    state = [name, False, False]
    reset = _running.set(state)
    try:
        func = resolve(task.func)
        args, kwargs = task.arguments()
        func(*args, **kwargs)
    except Exception as exc:
        error = _describe(exc, task)
        transaction(_retry_or_fail, task, error)
        return True
    finally:
        _running.reset(reset)
    if not (state[1] or state[2]):
        entities.delete([found.key])
    return True


def done_with_current():
    """Delete the task ``run_task`` is running in the caller's transaction,
    which saves its run a call; nothing for a task run otherwise (a lease
    holds it) or deferred again meanwhile."""
    state = _running.get()
    if state is None or state[1]:
        return
    entities.delete([entities.ref(Task.key_for(state[0]))])
    after_commit(lambda: state.__setitem__(2, True))


def _leased():
    return [db.model_from_protobuf(pb) for pb in leases.leased_entities()]


def get_tasks():
    """The tasks waiting to run (or running), oldest due first.

    A running task is shown as leased: ``due`` is the end of its lease.
    """
    tasks = {task.key(): task for task in _leased()}
    tasks.update((task.key(), task)
                 for task in _queued())
    return sorted(tasks.values(), key=lambda t: (t.due, t.key().name()))


def count_tasks(limit=1000):
    """How many tasks wait (or run), counted up to ``limit``."""
    keys = set(_queued(keys_only=True).run(
        limit=limit))
    keys.update(entities.key(pb.key) for pb in leases.leased_entities())
    return min(len(keys), limit)


def get_failed_tasks():
    """Tasks that used up their attempts; each keeps its last error."""
    return list(Task.all().filter('due =', None))


def count_leased():
    """How many tasks workers hold now (``get_tasks`` shows them too)."""
    return len({entities.key(pb.key) for pb in leases.leased_entities()})


def retry_failed():
    """Queue the failed tasks again, due now with no attempts used; how
    many. Each keeps its last error until it runs."""
    tasks = get_failed_tasks()
    now = utcnow()
    for failed in tasks:
        failed.status, failed.due, failed.attempts = (
            Status.QUEUED.value, now, 0)
    db.put(tasks)
    if tasks:
        push.announce([failed.key().name() for failed in tasks], now)
    return len(tasks)


def drop_failed():
    """Delete the failed tasks; how many."""
    keys = list(Task.all(keys_only=True).filter('due =', None))
    db.delete(keys)
    return len(keys)


def _next_due():
    """When a task is due next, or a lease ends whose tasks may come back."""
    first = _queued().order('due').get()
    times = [first.due if first else None, leases.next_expiry()]
    return min((t for t in times if t is not None), default=None)


def run_tasks(recursive=False, wait=False, deadline=None, max_tasks=None,
              lease_seconds=None, shared=False):
    """Run the tasks that are due now and return how many ran.

    ``recursive`` also runs the tasks those tasks queue, until none is due;
    ``wait`` (with ``recursive``) also waits for tasks due later, such as
    retries, until the queue is empty. ``deadline`` (seconds) and
    ``max_tasks`` bound the call; what is left stays queued. While pushes
    hand out tasks (``push``), it sweeps: it takes only tasks that are
    ``defaults.SWEEP_GRACE`` seconds overdue, which their pushes missed.

    A worker leases the due tasks 20 at a time, in the order they fall
    due. One of many that poll at once (``shared``) leases one at a time,
    picked at random: the workers share what is due, rather than one
    running it all while the rest wait, and seldom reach for the same task.
    """
    lease_seconds = lease_seconds or defaults.LEASE_SECONDS
    grace = datetime.timedelta(seconds=defaults.SWEEP_GRACE if
                               push.current() is not None else 0)
    stop_at = None if deadline is None else time.monotonic() + deadline

    def out_of_budget(count):
        return ((max_tasks is not None and count >= max_tasks) or
                (stop_at is not None and time.monotonic() >= stop_at))
    ran = 0
    while True:
        ran_in_pass = 0
        leases.recover(utcnow())
        for refs in taskstore.due_batches(utcnow() - grace):
            if shared:  # rival workers lease other tasks first
                random.shuffle(refs)
            while refs:
                if out_of_budget(ran):
                    return ran
                token = uuid.uuid4().hex
                leased, rest = leases.lease(refs[:1] if shared else refs,
                                            token, lease_seconds)
                refs = rest + refs[1:] if shared else rest
                count = _run_lease(token, leased,
                                   lambda n: out_of_budget(ran + n))
                ran += count
                ran_in_pass += count
        if out_of_budget(ran):
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


def run_in_threads(threads, **kwargs):
    """``run_tasks(**kwargs)`` in ``threads`` workers at once; how many ran.

    With ``recursive``, a worker that finds nothing due waits while the
    others run: what they run may queue more.
    """
    if threads <= 1:
        return run_tasks(**kwargs)
    lock, busy, ran = threading.Lock(), [0], [0]
    stop_at = (None if kwargs.get('deadline') is None
               else time.monotonic() + kwargs['deadline'])

    def work():
        while True:
            with lock:
                busy[0] += 1
            count = 0
            try:
                count = run_tasks(shared=True, **kwargs)
            finally:
                with lock:
                    busy[0] -= 1
                    ran[0] += count
                    others_busy = busy[0] > 0
            if not kwargs.get('recursive') or (
                    stop_at is not None and time.monotonic() >= stop_at) or (
                    count == 0 and not others_busy):
                return
            if count == 0:
                time.sleep(0.01)
    workers = [threading.Thread(target=work, name='lovely-gae-worker-%d' % n)
               for n in range(1, threads + 1)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return ran[0]


def _run_lease(token, leased, out_of_budget):
    """Run the tasks of a lease, then end it; how many ran."""
    waiting = {task.name for task in leased}
    reset = _waiting.set(waiting)
    try:
        for index, leased_task in enumerate(leased):
            if out_of_budget(index):
                transaction(leases.release, token, leased[index:])
                return index
            waiting.discard(leased_task.name)
            _run_one(leased_task)
    finally:
        _waiting.reset(reset)
    if leased:
        leases.finish(token)
    return len(leased)


def _describe(exc, task):
    """The one-line error of a failed try, logged."""
    error = ''.join(traceback.format_exception_only(type(exc), exc)).strip()
    log.warning('task %s failed (attempt %d of %d): %s', task.func,
                task.attempts, task.max_attempts, error, exc_info=True)
    return error


def _run_one(task):
    """Run a leased task; if it fails, put it back in the queue to retry."""
    try:
        func = resolve(task.func)
        args, kwargs = _arguments(task.payload)
        func(*args, **kwargs)
    except Exception as exc:
        transaction(_settle_failure, task, _describe(exc, task))


def _settle_failure(leased, error):
    if not leases.holds(leased.lease):
        return  # the lease ran out and another worker took the task over
    # If the same work was deferred again meanwhile, this retry stands for it.
    _retry_or_fail(db.model_from_protobuf(leased.entity), error)


def _retry_or_fail(task, error):
    """Store a task that failed: due again after its backoff, or failed for
    good after its last attempt (then ``on_failure`` runs, here)."""
    task.error = error
    if task.attempts < task.max_attempts:
        delay = min(task.retry_delay * 2 ** (task.attempts - 1),
                    defaults.MAX_RETRY_DELAY)
        task.due = utcnow() + datetime.timedelta(seconds=delay)
        task.put()
        push.announce([task.key().name()], task.due, task.attempts)
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
