"""Workers as production runs them, in virtual time.

A run (``run``) has one client participant (it starts the work: a snapshot,
a restore) and K worker participants, and lasts until none can do more.

- Push mode (production's, the headline): the ``Dispatcher`` is the
  library's pusher (``lovely_gae.push.use``). Each ``announce`` is one
  task-queue add per ``PUSH_BATCH`` names, charged to the announcing thread
  like a datastore call without entities; a name (once per name and due
  time, as named push tasks are) becomes available when that add completes,
  or ``due`` later. Each worker takes the next available name and runs
  ``async_.run_task(name)``, so at most K tasks are in flight, as with
  ``max_concurrent_requests``. Idle workers wait on the dispatcher: no
  polling, no cost.
- Poll mode (today's cron and ``serve`` workers): no pusher; each worker
  loops ``async_.run_tasks(max_tasks=..., shared=True)`` (a task a lease,
  picked at random, as ``serve``'s threads do) and sleeps ``interval``
  virtual seconds after a round that ran nothing. The calls of those empty rounds
  are the idle workers' polling (``Stats.idle_calls``).
"""
import gc
import heapq
import itertools
import logging
import math
import threading
import time
import traceback

from lovely_gae import async_, base, push

from . import simclock

__all__ = ['run', 'untracked']

log = logging.getLogger(__name__)

#: Names one task-queue add carries (``taskqueue.MAX_TASKS_PER_ADD``).
PUSH_BATCH = 100
#: Times a push whose ``run_task`` raised is delivered again, 1 s apart.
_REDELIVERIES = 5

_last_epoch = [0.0]


class Stats:
    """What the workers did in one run."""

    def __init__(self):
        self.tasks = 0            # tasks that ran
        self.not_ran = 0          # pushes whose run_task found nothing to run
        self.last_end = 0.0       # virtual time the last task ended
        self.task_seconds = []    # virtual duration of each task
        self.idle_calls = 0       # poll mode: calls of rounds that ran nothing
        self.idle_polls = 0
        self.work_calls = 0       # poll mode: calls of rounds that ran tasks
        self.errors = []
        self.pushes = 0           # task-queue adds
        self.pushed = 0           # names pushed (after de-duplication)
        self.duplicates = 0       # names pushed again with the same due time
        self.redelivered = 0


class Dispatcher:
    """The pusher of push mode: hands announced task names to workers."""

    def __init__(self, scheduler, latency, stats):
        self.scheduler = scheduler
        self.latency = latency
        self.stats = stats
        self._heap = []
        self._order = itertools.count()
        self._seen = set()
        self.idle = []
        self.closed = False

    def announce(self, names, due, transactional=False, attempt=0):
        part = simclock.current()
        scheduler = self.scheduler
        if part is None:
            raise RuntimeError('a task was pushed outside the simulation')
        scheduler.charge(part)
        adds = math.ceil(len(names) / PUSH_BATCH)
        self.stats.pushes += adds
        scheduler.advance(part, adds * self.latency.datastore(0))
        countdown = max(0.0, (due - base.utcnow()).total_seconds())
        self.offer(names, part.clock + countdown,
                   [push.push_name(name, due, attempt) for name in names])
        scheduler.mark(part)

    def offer(self, names, available, push_names=None):
        """Make ``names`` available to workers at virtual ``available``;
        a push name seen before is no new push, as App Engine's queue
        takes a task name once (``push.push_name``)."""
        fresh = 0
        for name, push_name in zip(names, push_names or [None] * len(names)):
            if push_name is not None:
                if push_name in self._seen:
                    self.stats.duplicates += 1
                    continue
                self._seen.add(push_name)
            heapq.heappush(self._heap, (available, next(self._order), name))
            fresh += 1
        self.stats.pushed += fresh if push_names is not None else 0
        while fresh and self.idle:
            self.scheduler.wake(self.idle.pop(0), available)
            fresh -= 1

    def take(self, part):
        """The next name due by the worker's clock; None once closed."""
        scheduler = self.scheduler
        while not self.closed:
            if self._heap:
                available, _, name = self._heap[0]
                if available <= part.clock:
                    heapq.heappop(self._heap)
                    return name
                scheduler.charge(part)
                scheduler.advance(part, available - part.clock)
                scheduler.turn(part)
                continue
            self.idle.append(part)
            scheduler.block()
        return None

    def pending(self):
        return len(self._heap)

    def close(self):
        """End the run: every idle worker wakes and leaves."""
        self.closed = True
        for part in self.idle:
            self.scheduler.wake(part, part.clock)
        self.idle = []


class untracked:
    """The harness's own datastore calls inside a participant: free and
    uncounted."""

    def __enter__(self):
        self.part = simclock.current()
        self.part.untracked = True

    def __exit__(self, *exc_info):
        self.part.untracked = False
        self.part.scheduler.mark(self.part)


def _push_worker(ctx, part):
    dispatcher, stats, memory = ctx['dispatcher'], ctx['stats'], ctx['memory']
    tries = {}
    while True:
        name = dispatcher.take(part)
        if name is None:
            return
        start = part.clock
        if memory:
            memory.start_task()
        try:
            ran = async_.run_task(name)
        except Exception:
            ran = False
            stats.errors.append('run_task(%s): %s' % (
                name, traceback.format_exc(limit=3)))
            tries[name] = tries.get(name, 0) + 1
            if tries[name] <= _REDELIVERIES:
                stats.redelivered += 1
                dispatcher.offer([name], part.clock + 1.0)
        finally:
            if memory:
                memory.end_task(name)
        stats.tasks += bool(ran)
        stats.not_ran += not ran
        stats.task_seconds.append(part.clock - start)
        stats.last_end = max(stats.last_end, part.clock)


def _queue_empty():
    with untracked():
        return async_.count_tasks(limit=1) == 0


def _poll_worker(ctx, part):
    dispatcher, stats = ctx['dispatcher'], ctx['stats']
    while not dispatcher.closed:
        before = part.calls
        ran = async_.run_tasks(max_tasks=ctx['max_tasks'], shared=True)
        used = part.calls - before
        if ran:
            stats.tasks += ran
            stats.work_calls += used
            stats.last_end = max(stats.last_end, part.clock)
            continue
        stats.idle_calls += used
        stats.idle_polls += 1
        if not ctx['clients'] and _queue_empty():
            dispatcher.closed = True
            return
        time.sleep(ctx['interval'])


def _client(ctx, part, func):
    try:
        ctx['result'] = func()
    except Exception:
        ctx['stats'].errors.append('client: ' + traceback.format_exc(limit=5))
    finally:
        ctx['client_end'] = part.clock
        ctx['clients'] -= 1


def _thread(scheduler, part, body, *args, ends=None, errors=None):
    def target():
        scheduler.enter(part)
        try:
            body(*args)
        except Exception:
            log.exception('participant %s failed', part.name)
            if errors is not None:
                errors.append('%s: %s' % (part.name, traceback.format_exc(
                    limit=5)))
        finally:
            if ends is not None:
                ends.append(part.clock)
            scheduler.leave()
    return threading.Thread(target=target, name=part.name, daemon=True)


def run(sim, client, workers, mode='push', max_tasks=20, interval=1.0,
        bodies=None):
    """Run ``client()`` and K ``workers`` until no work is left.

    ``bodies`` replaces the library's workers with K callables of one
    argument, the participant (the ideal reader). Returns a dict:
    ``seconds`` (virtual makespan), ``client_seconds``, ``counts``,
    ``stats``, the client's ``result``.
    """
    scheduler = sim.scheduler
    stats = Stats()
    dispatcher = Dispatcher(scheduler, sim.latency, stats)
    ctx = {'dispatcher': dispatcher, 'stats': stats, 'memory': sim.memory,
           'max_tasks': max_tasks, 'interval': interval,
           'clients': 1 if client else 0, 'client_end': 0.0, 'result': None}
    threads, ends = [], []
    if client:
        part = scheduler.add('client')
        threads.append(_thread(scheduler, part, _client, ctx, part, client))
    for number in range(workers):
        part = scheduler.add('worker-%d' % number)
        if bodies is not None:
            threads.append(_thread(scheduler, part, bodies[number], part,
                                   ends=ends, errors=stats.errors))
        else:
            body = _push_worker if mode == 'push' else _poll_worker
            threads.append(_thread(scheduler, part, body, ctx, part))
    epoch = max(time.time(), _last_epoch[0] + 1.0)
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()  # a collection walks the stub: not the library's CPU
    try:
        with simclock.VirtualTime(scheduler, epoch), \
                push.use(dispatcher if mode == 'push' else None):
            for thread in threads:
                thread.start()
            scheduler.kick()
            while True:
                scheduler.wait_quiet()
                if scheduler.members == 0:
                    break
                dispatcher.close()  # all that is left waits for work
                scheduler.kick()
            for thread in threads:
                thread.join()
    finally:
        if enabled:
            gc.enable()
    parts_end = max([stats.last_end, ctx['client_end']] + ends)
    _last_epoch[0] = epoch + parts_end
    if dispatcher.pending():
        stats.errors.append('%d pushes never delivered' % dispatcher.pending())
    return {'seconds': parts_end, 'client_seconds': ctx['client_end'],
            'counts': sim.counts.as_dict(), 'stats': stats,
            'result': ctx['result']}
