"""Handing stored tasks to workers as they are stored: push tasks.

The queue kept in the datastore is the record of what is to be done; a
pusher tells a worker about each task the moment it is stored, so that many
workers run tasks at once and none polls. On App Engine that is the SDK's
task queue API (``TaskqueuePusher``), which the SDK can route to Cloud
Tasks: each push names the task's key to the worker endpoint, which runs
that task (``async_.run_task``). A push that is lost costs only time: the
sweeper (``async_.run_tasks``, from cron) runs whatever waits too long.

A pusher has one method, ``announce(names, due, transactional, attempt)``:
``names`` are key names of stored tasks, due at ``due`` (naive UTC), to be
tried the ``attempt``-th time; ``transactional`` says they are part of a
transaction that has not committed yet.
"""
import contextlib
import hashlib
import os

from google.appengine.api import datastore
from google.appengine.api.taskqueue import taskqueue

from . import defaults
from .base import after_commit, before_commit, utcnow
from .defaults import on_app_engine
from .tasks import micros

__all__ = ['PARAM', 'TaskqueuePusher', 'push_name', 'current', 'use',
           'announce']

#: Push tasks one taskqueue call adds at most.
_ADD_BATCH = taskqueue.MAX_TASKS_PER_ADD

#: The worker endpoint's parameter that names a task.
PARAM = 'task'


class TaskqueuePusher:
    """Push tasks on App Engine's task queue ``queue_name`` to ``url``."""

    queue_name = defaults.PUSH_QUEUE
    #: The worker endpoint of the snapshot app.
    url = '/lovely.gae/worker'

    def _task(self, names, due, name=None):
        countdown = max(0.0, (due - utcnow()).total_seconds())
        # The token, where the app has one: in token-only mode the queue's
        # own header opens nothing (docs/security.rst).
        token = os.environ.get(defaults.TOKEN_ENV)
        headers = {'Authorization': 'Bearer ' + token} if token else None
        return taskqueue.Task(url=self.url, params={PARAM: list(names)},
                              countdown=countdown or None, name=name,
                              headers=headers)

    def announce(self, names, due, transactional=False, attempt=0):
        queue = taskqueue.Queue(self.queue_name)
        if transactional:
            # One unnamed push for all of them: App Engine allows neither
            # names nor more than 5 pushes in a transaction. Its worker
            # pushes each task on its own (``announce`` again, outside).
            queue.add(self._task(names, due), transactional=True)
            return
        tasks = [self._task([name], due, push_name(name, due, attempt))
                 for name in names]
        for start in range(0, len(tasks), _ADD_BATCH):
            batch = tasks[start:start + _ADD_BATCH]
            try:
                queue.add(batch)
            except (taskqueue.TaskAlreadyExistsError,
                    taskqueue.TombstonedTaskError):
                for task in batch:  # pushed before: each on its own
                    try:
                        queue.add(task)
                    except (taskqueue.TaskAlreadyExistsError,
                            taskqueue.TombstonedTaskError):
                        pass


#: Seconds within which the same task queued again is one push: tasks that
#: queue the same work at once (each that sees a job complete) push it once.
_SAME_PUSH_SECONDS = 60


def push_name(name, due, attempt=0):
    """The push task's name for try ``attempt`` of the task ``name`` due at
    ``due``: the same task queued again within ``_SAME_PUSH_SECONDS`` is one
    push, as is the same push added twice; a retry gets a push of its own.
    (A task queued again later still, after it ran, is pushed again; one
    queued again sooner is run by the sweeper.)"""
    window = int(micros(due) // (_SAME_PUSH_SECONDS * 10 ** 6))
    digest = hashlib.sha256(('%s\0%d\0%d' % (name, window, attempt))
                            .encode())
    return 'lg-' + digest.hexdigest()[:40]


_pusher = None


def current():
    """The pusher in use: the one ``use`` installed, else on App Engine (or
    with ``defaults.PUSH``) a ``TaskqueuePusher``, else None."""
    if _pusher is not None:
        return _pusher
    wanted = on_app_engine() if defaults.PUSH is None else defaults.PUSH
    return TaskqueuePusher() if wanted else None


@contextlib.contextmanager
def use(pusher):
    """Install ``pusher`` for the process while inside (None: the default)."""
    global _pusher
    before, _pusher = _pusher, pusher
    try:
        yield pusher
    finally:
        _pusher = before


class _OnePush:
    """The tasks of a transaction, pushed together as it commits."""

    def __init__(self, pusher):
        self.pusher, self.names, self.due = pusher, [], None

    def add(self, names, due):
        self.names.extend(names)
        self.due = due if self.due is None else min(self.due, due)

    def __call__(self):
        self.pusher.announce(self.names, self.due, transactional=True)


def announce(names, due, attempt=0):
    """Tell the pusher in use about stored tasks.

    In a transaction, App Engine's queue gets one push for all of the
    transaction's tasks, added with its commit (a transaction that
    ``base.transaction`` did not start gets one push a call); a pusher that
    cannot be part of a transaction hears of them after the commit.
    """
    pusher = current()
    if pusher is None or not names:
        return
    if not isinstance(pusher, TaskqueuePusher):
        after_commit(lambda: pusher.announce(names, due, False, attempt))
    elif not datastore.IsInTransaction():
        pusher.announce(names, due, attempt=attempt)
    else:
        batch = before_commit(('push', pusher.queue_name), _OnePush(pusher))
        if batch is None:
            pusher.announce(names, due, transactional=True)
        else:
            batch.add(names, due)
