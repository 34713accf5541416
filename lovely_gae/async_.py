"""A task queue whose tasks are entities in the datastore.

A task is the dotted name of a registered function plus its serialized
arguments: a worker runs only functions registered with ``task`` (as huey
registers its tasks), so a task that data put into the queue cannot name
``os:system`` (what a task is: ``tasks``; where tasks are kept:
``taskstore``). It survives a restart, can be written in the same
transaction as the data it belongs to, and runs at least once: a task that
raises is retried with backoff, and a worker that dies gives its tasks back
when its lease expires. ``run_tasks`` is the one code path that runs tasks,
for tests, the CLI worker and the HTTP worker alike.
"""
import contextvars
import datetime
import logging
import random
import threading
import time
import traceback
import uuid

from . import defaults, entities, push, taskstore
from .base import transaction, utcnow
from .exceptions import NotYet
from .tasks import (MAX_ERROR, Status, Task, dotted_name, make_task, register,
                    resolve, task)

__all__ = ['Status', 'Task', 'task', 'register', 'defer', 'defer_many',
           'make_task', 'get_tasks', 'count_tasks', 'next_task',
           'get_failed_tasks',
           'count_leased', 'retry_failed', 'drop_failed', 'Clock', 'run_tasks',
           'run_in_threads', 'run_task', 'push_again',
           'dotted_name', 'resolve']

log = logging.getLogger(__name__)

#: Key names of the tasks that the lease being run holds and will run next.
_waiting = contextvars.ContextVar('waiting', default=frozenset())
#: ``[key name, deferred again?]`` of the task ``run_task`` runs.
_running = contextvars.ContextVar('running', default=None)
#: How early a push may come for a task (clocks differ a little).
_PUSH_SKEW = datetime.timedelta(seconds=5)
#: Key names of the tasks that threads of this process sharing the queue
#: (``run_tasks(shared=True)``) lease or run: the others pick other tasks.
_claimed = set()
_claimed_lock = threading.Lock()


class Clock:
    """The time ``run_tasks`` keeps: real time. Tests pass a clock they
    advance (``lovely_gae.testing.Clock``)."""

    #: Seconds a worker waiting for tasks sleeps at most before it looks
    #: again: other workers may queue tasks meanwhile.
    poll_seconds = 1.0

    def now(self):
        """Naive UTC, as tasks store their times."""
        return utcnow()

    def sleep(self, seconds):
        time.sleep(seconds)


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


def defer_many(tasks, then=()):
    """Store tasks made by ``make_task`` with as few writes as possible,
    and announce them to the pusher in use (``push``). ``then``: entities
    the tasks need, put (outside any transaction) once they are stored,
    as they are announced: a task taken first must be tried again."""
    waiting, running = _waiting.get(), _running.get()
    tasks = [task for task in tasks if task.name not in waiting]
    taskstore.enqueue(tasks)
    landing = then and entities.SentPut([pb.SerializeToString()
                                         for pb in then])
    if running is not None and any(t.name == running[0] for t in tasks):
        running[1] = True  # its run must not delete it when done
    _announce(tasks)
    if landing:
        landing.wait()


def push_again(names):
    """Push each of the stored tasks ``names`` on its own, as it is due."""
    _announce([found for found in taskstore.get(names)
               if found is not None and found.due is not None])


def _announce(tasks):
    """Announce ``tasks`` to the pusher, those due at once together."""
    by_due = {}
    for stored in tasks:
        by_due.setdefault(stored.due, []).append(stored.name)
    for due, names in sorted(by_due.items()):
        push.announce(names, due)


def run_task(name):
    """Run the queued task with key name ``name`` if it is due: what a
    push asks for. Returns whether it ran.

    The task is read, run, and deleted: no lease, since a push hands each
    task to one worker (a task runs at least once anyway). If it fails it
    is stored again with its error, due after its backoff, and pushed.
    """
    [found] = taskstore.get([name])
    if found is None:
        return False  # done, failed for good, or held by a lease
    if found.due is None or found.due > utcnow() + _PUSH_SKEW:
        return False
    found.attempts += 1
    state = [name, False]
    reset = _running.set(state)
    try:
        _call(found)
    except Exception as exc:
        transaction(_retry_or_fail, found, _describe(exc, found), utcnow())
        return True
    finally:
        _running.reset(reset)
    if not state[1]:
        taskstore.delete([name])
    return True


def get_tasks():
    """The tasks waiting to run (or running: shown as leased, ``due`` the
    end of its lease), oldest due first."""
    tasks = {task.name: task for task in taskstore.leased()}
    tasks.update((task.name, task) for task in taskstore.queued())
    return sorted(tasks.values(), key=lambda t: (t.due, t.name))


#: How many tasks wait (or run), counted up to ``limit``.
count_tasks = taskstore.size
#: ``(task, held)`` of the task that falls due next (``held``: a worker's
#: lease holds it, ``due`` is the lease's end), or None.
next_task = taskstore.next_task
#: Tasks that used up their attempts; each keeps its last error.
get_failed_tasks = taskstore.failed


def count_leased():
    """How many tasks workers hold now (``get_tasks`` shows them too)."""
    return len({task.name for task in taskstore.leased()})


def retry_failed():
    """Queue the failed tasks again, due now with no attempts used; how
    many. Each keeps its last error until it runs."""
    tasks = taskstore.failed()
    for failed in tasks:
        failed.attempts = 0
    taskstore.retry(tasks, utcnow())
    _announce(tasks)
    return len(tasks)


def drop_failed():
    """Delete the failed tasks; how many."""
    names = [failed.name for failed in taskstore.failed()]
    taskstore.delete(names)
    return len(names)


def run_tasks(recursive=False, wait=False, deadline=None, max_tasks=None,
              shared=False, clock=None):
    """Run the tasks that are due now and return how many ran.

    ``recursive`` also runs the tasks those tasks queue, until none is due;
    ``wait`` (with ``recursive``) also waits for tasks due later, such as
    retries, until the queue is empty. ``deadline`` (seconds) and
    ``max_tasks`` bound the call; what is left stays queued. While pushes
    hand out tasks (``push``), it sweeps: it takes only tasks that are
    ``defaults.SWEEP_GRACE`` seconds overdue, which their pushes missed.
    ``clock`` keeps the time (default: a real ``Clock``).

    A worker leases the due tasks 20 at a time, in the order they fall
    due (``_run_due``). One of many that poll at once (``shared``) leases
    one at a time (``_run_shared``): the workers share what is due, rather
    than one running it all while the rest wait.
    """
    clock = clock or Clock()
    grace = datetime.timedelta(seconds=defaults.SWEEP_GRACE if
                               push.current() is not None else 0)
    stop_at = (None if deadline is None
               else clock.now() + datetime.timedelta(seconds=deadline))

    def out_of_budget(count):
        return ((max_tasks is not None and count >= max_tasks) or
                (stop_at is not None and clock.now() >= stop_at))
    ran = 0
    while True:
        taskstore.recover(clock.now())
        ran_in_pass = (_run_shared if shared else _run_due)(
            clock, clock.now() - grace, lambda n: out_of_budget(ran + n))
        ran += ran_in_pass
        if out_of_budget(ran):
            return ran
        if not recursive or (ran_in_pass == 0 and not wait):
            return ran
        if ran_in_pass == 0:
            next_due = taskstore.next_due()
            if next_due is None:
                return ran
            pause = min(max((next_due - clock.now()).total_seconds(), 0),
                        clock.poll_seconds)
            if stop_at is not None:
                pause = min(pause, (stop_at - clock.now()).total_seconds())
                if pause <= 0:
                    return ran
            clock.sleep(pause)


def _run_due(clock, cutoff, out_of_budget):
    """Lease and run the tasks due by ``cutoff`` in order; how many ran."""
    ran = 0
    for refs in taskstore.due(cutoff):
        while refs:
            if out_of_budget(ran):
                return ran
            token = uuid.uuid4().hex
            leased, refs = taskstore.lease(refs, token, clock.now(),
                                           defaults.LEASE_SECONDS)
            ran += _run_lease(token, leased, clock,
                              lambda n: out_of_budget(ran + n))
    return ran


def _run_shared(clock, cutoff, out_of_budget):
    """Lease and run due tasks one at a time, as one of many workers; how
    many ran.

    Each lease picks at random among the first ``taskstore.BATCH`` due
    tasks, read again for it: a task run takes seconds, in which the other
    workers lease what was due before (trying those would cost a
    transaction each). Tasks that other threads of this process are
    leasing or running are left to them (``_claimed``): between threads,
    no two leases reach for the same task. A task whose lease came away
    empty (another process took it) is not tried again in this pass.
    """
    ran, tried = 0, set()
    while not out_of_budget(ran):
        first = next(taskstore.due(cutoff, limit=taskstore.BATCH), [])
        refs = {ref.path.element[-1].name: ref for ref in first}
        with _claimed_lock:
            free = sorted(set(refs) - tried - _claimed)
            if not free:
                return ran
            name = random.choice(free)
            _claimed.add(name)
        tried.add(name)
        try:
            token = uuid.uuid4().hex
            leased, _ = taskstore.lease([refs[name]], token, clock.now(),
                                        defaults.LEASE_SECONDS)
            ran += _run_lease(token, leased, clock,
                              lambda n: out_of_budget(ran + n))
        finally:
            with _claimed_lock:
                _claimed.discard(name)
    return ran


def run_in_threads(threads, **kwargs):
    """``run_tasks(**kwargs)`` in ``threads`` workers at once; how many ran.

    With ``recursive``, a worker that finds nothing due waits while the
    others run: what they run may queue more.
    """
    if threads <= 1:
        return run_tasks(**kwargs)
    clock = kwargs.setdefault('clock', Clock())
    lock, busy, ran = threading.Lock(), [0], [0]
    stop_at = (None if kwargs.get('deadline') is None else
               clock.now() + datetime.timedelta(seconds=kwargs['deadline']))

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
                    stop_at is not None and clock.now() >= stop_at) or (
                    count == 0 and not others_busy):
                return
            if count == 0:
                time.sleep(0.01)  # real time: the others' tasks take it
    workers = [threading.Thread(target=work, name='lovely-gae-worker-%d' % n)
               for n in range(1, threads + 1)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return ran[0]


def _run_lease(token, leased, clock, out_of_budget):
    """Run the tasks of a lease, then end it; how many ran."""
    waiting = {task.name for task in leased}
    reset = _waiting.set(waiting)
    try:
        for index, leased_task in enumerate(leased):
            if out_of_budget(index):
                transaction(taskstore.release, token, leased[index:],
                            clock.now())
                return index
            waiting.discard(leased_task.name)
            try:
                _call(leased_task)
            except Exception as exc:
                transaction(_settle_failure, leased_task,
                            _describe(exc, leased_task), clock.now())
    finally:
        _waiting.reset(reset)
    if leased:
        taskstore.finish(token)
    return len(leased)


def _call(task):
    """Run the function of ``task``, if it is registered."""
    func = resolve(task.func)
    args, kwargs = task.arguments()
    func(*args, **kwargs)


def _describe(exc, task):
    """The one-line error of a failed try, logged (a ``NotYet``, expected
    now and then, as information)."""
    error = ''.join(traceback.format_exception_only(type(exc), exc)).strip()
    expected = isinstance(exc, NotYet)
    log.log(logging.INFO if expected else logging.WARNING,
            'task %s failed (attempt %d of %d): %s', task.func, task.attempts,
            task.max_attempts, error, exc_info=not expected)
    if len(error) > MAX_ERROR:  # its start and end, where it fits
        half = MAX_ERROR // 2
        error = '%s ... %s' % (error[:half - 3], error[-(half - 2):])
    return error


def _settle_failure(leased, error, now):
    if not taskstore.holds(leased.lease):
        return  # the lease ran out and another worker took the task over
    # If the same work was deferred again meanwhile, this retry stands for it.
    _retry_or_fail(leased, error, now)


def _retry_or_fail(task, error, now):
    """Store a task that failed: due again after its backoff, or failed for
    good after its last attempt (then ``on_failure`` runs, here)."""
    task.error = error
    if task.attempts < task.max_attempts:
        delay = min(task.retry_delay * 2 ** (task.attempts - 1),
                    defaults.MAX_RETRY_DELAY)
        due = now + datetime.timedelta(seconds=delay)
        taskstore.retry([task], due)
        push.announce([task.name], due, task.attempts)
        return
    taskstore.fail(task)
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
