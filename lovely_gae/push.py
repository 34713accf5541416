"""Handing stored tasks to workers as they are stored: push tasks.

The queue kept in the datastore is the record of what is to be done; a
pusher tells a worker about each task the moment it is stored, so that many
workers run tasks at once and none polls. On App Engine that is the SDK's
task queue API (``TaskqueuePusher``), which the SDK can route to Cloud
Tasks: each push names the task's key to the worker endpoint, which runs
that task (``async_.run_task``). A push that is lost costs only time: the
sweeper (``async_.run_tasks``, from cron) runs whatever waits too long.

A pusher has one method, ``announce(names, due, transactional)``: ``names``
are key names of stored tasks, due at ``due`` (naive UTC); ``transactional``
says they are part of a transaction that has not committed yet.
"""
import contextlib
import hashlib
import logging
import os

from google.appengine.api import datastore
from google.appengine.api.taskqueue import taskqueue

from . import defaults
from .base import after_commit, before_commit, on_app_engine, utcnow

__all__ = ['PARAM', 'TaskqueuePusher', 'push_name', 'current', 'use',
           'announce']

log = logging.getLogger(__name__)

#: Push tasks one taskqueue call adds at most.
_ADD_BATCH = taskqueue.MAX_TASKS_PER_ADD

#: The worker endpoint's parameter that names a task.
PARAM = 'task'


class TaskqueuePusher:
    """Push tasks on App Engine's task queue ``queue_name`` to ``url``."""

    #: The worker endpoint of the snapshot app.
    url = '/lovely.gae/worker'

    def __init__(self, queue_name=None, url=None):
        self.queue_name = queue_name or defaults.PUSH_QUEUE
        self.url = url or self.url

    def _task(self, names, due, name=None):
        countdown = max(0.0, (due - utcnow()).total_seconds())
        # The token, where the app has one: in token-only mode the queue's
        # own header opens nothing (docs/security.rst).
        token = os.environ.get(defaults.TOKEN_ENV)
        headers = {'Authorization': 'Bearer ' + token} if token else None
        return taskqueue.Task(url=self.url, params={PARAM: list(names)},
                              countdown=countdown or None, name=name,
                              headers=headers)

    def announce(self, names, due, transactional=False):
        queue = taskqueue.Queue(self.queue_name)
        if transactional:
            # One unnamed push for all of them: App Engine allows neither
            # names nor more than 5 pushes in a transaction. Its worker
            # pushes each task on its own (``announce`` again, outside).
            queue.add(self._task(names, due), transactional=True)
            return
        tasks = [self._task([name], due, push_name(name, due))
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


def push_name(name, due):
    """The push task's name for the task ``name`` due at ``due``: the same
    push twice is one push; the task queued again gets a push of its own."""
    digest = hashlib.sha256(('%s\0%s' % (name, due.isoformat())).encode())
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


def announce(names, due):
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
        after_commit(lambda: pusher.announce(names, due, False))
    elif not datastore.IsInTransaction():
        pusher.announce(names, due)
    else:
        batch = before_commit(('push', pusher.queue_name), _OnePush(pusher))
        if batch is None:
            pusher.announce(names, due, transactional=True)
        else:
            batch.add(names, due)
