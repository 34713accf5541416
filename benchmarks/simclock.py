"""Virtual time for the simulated benchmarks: cooperative threads, one baton.

Each participating thread has a virtual clock. A ``Scheduler`` lets one of
them run at a time, always the runnable one whose clock is smallest, so the
threads take turns in virtual-time order however the machine schedules
them. A thread's clock advances by

- its own Python CPU while it holds the baton (``time.thread_time``
  deltas: exact, since no other participant runs meanwhile), and
- what the latency model charges for each datastore call it waits on, and
  each virtual ``time.sleep``.

``VirtualTime`` makes the library see that clock: ``time.time``,
``time.monotonic``, ``time.sleep`` and the library's ``base.utcnow`` answer
a participant in virtual time (everyone else in real time), so that its
deadlines (a pass that goes on in a new task after ``PASS_SECONDS``) and
backoffs fall where they would in production, not where the stub's speed
puts them.
"""
import datetime
import heapq
import itertools
import sys
import threading
import time

__all__ = ['Scheduler', 'VirtualTime', 'current']

_thread_time = time.thread_time
_local = threading.local()


def current():
    """The participant this thread is, or None."""
    return getattr(_local, 'participant', None)


class Participant:
    """One cooperative thread: its clock (seconds) and its baton signal."""

    def __init__(self, scheduler, name, clock):
        self.scheduler = scheduler
        self.name = name
        self.clock = clock
        self.go = threading.Event()
        self.cpu_mark = None
        self.in_stub = False    # inside a stub call: no yielding
        self.untracked = False  # the harness's own checks: not charged
        self.calls = 0          # calls charged to it (see simstub)

    def __repr__(self):
        return '<Participant %s at %.3f s>' % (self.name, self.clock)


class Scheduler:
    """Hands the baton to the runnable participant with the smallest clock.

    Every method but ``add``, ``kick`` and ``wait_quiet`` is called by the
    participant that holds the baton, so the state they touch needs no lock
    of its own beyond the short one around the heap.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._ready = []
        self._order = itertools.count()
        self._holder = None
        self._members = 0
        self.quiet = threading.Event()
        self.quiet.set()

    # -- from the harness (not a participant) -----------------------------

    def add(self, name, clock=0.0):
        """A new participant, runnable at ``clock``; bind it with ``enter``."""
        part = Participant(self, name, clock)
        with self._lock:
            self._members += 1
            self.quiet.clear()
            heapq.heappush(self._ready, (clock, next(self._order), part))
        return part

    def kick(self):
        """Give the baton to the first runnable participant if none has it."""
        with self._lock:
            if self._holder is None and self._ready:
                self.quiet.clear()
                self._holder = heapq.heappop(self._ready)[2]
                self._holder.go.set()
            elif self._holder is None:
                self.quiet.set()

    def wait_quiet(self):
        """Block until no participant runs or can run (all idle or gone)."""
        self.quiet.wait()

    @property
    def members(self):
        return self._members

    # -- from participants --------------------------------------------------

    def enter(self, part):
        """Bind this thread to ``part`` and wait for the baton."""
        _local.participant = part
        self._wait(part)

    def leave(self):
        """This thread's participant is done: hand the baton on."""
        part = current()
        self.charge(part)
        _local.participant = None
        with self._lock:
            self._members -= 1
            self._pass_on(part)

    def charge(self, part):
        """Add the CPU since the last mark to the clock; mark again."""
        now = _thread_time()
        if part.cpu_mark is not None and not part.untracked:
            part.clock += now - part.cpu_mark
        part.cpu_mark = now

    def mark(self, part):
        """Start counting CPU from here (what came before is not charged)."""
        part.cpu_mark = _thread_time()

    def advance(self, part, seconds):
        """Charge ``seconds`` of waiting (latency, a sleep) to the clock."""
        part.clock += seconds

    def turn(self, part):
        """Let any participant whose clock is smaller run first."""
        self.charge(part)
        with self._lock:
            if not self._ready or self._ready[0][0] >= part.clock:
                self.mark(part)
                return
            heapq.heappush(self._ready, (part.clock, next(self._order), part))
            self._pass_on(part)
        self._wait(part)

    def block(self):
        """Stop running until another participant ``wake``s this one."""
        part = current()
        self.charge(part)
        with self._lock:
            self._pass_on(part)
        self._wait(part)

    def wake(self, part, at):
        """Make a blocked ``part`` runnable at ``at`` (or its clock)."""
        part.clock = max(part.clock, at)
        with self._lock:
            heapq.heappush(self._ready, (part.clock, next(self._order), part))

    def sleep(self, seconds):
        """A virtual ``time.sleep``: the clock moves on, others run."""
        part = current()
        self.charge(part)
        self.advance(part, max(0.0, seconds))
        self.turn(part)

    def _pass_on(self, part):
        """Hand the baton from ``part`` on (lock held)."""
        if self._ready:
            self._holder = heapq.heappop(self._ready)[2]
            self._holder.go.set()
        else:
            self._holder = None
            self.quiet.set()

    def _wait(self, part):
        part.go.wait()
        part.go.clear()
        self.mark(part)


class VirtualTime:
    """While inside, participants see their virtual clock as the time.

    ``epoch`` is the real time that virtual time 0 stands for. Patched:
    ``time.time``, ``time.monotonic``, ``time.sleep`` (the ``time`` module
    is shared, so each answers in real time outside participants), and
    ``utcnow`` wherever a ``lovely_gae`` module holds the one of
    ``lovely_gae.base`` (the library's only wall clock).
    """

    def __init__(self, scheduler, epoch):
        self.scheduler = scheduler
        self.epoch = epoch
        self._mono = time.monotonic()
        self._saved = []

    def _time(self):
        part = current()
        return self._real_time() if part is None else self.epoch + part.clock

    def _monotonic(self):
        part = current()
        return (self._real_monotonic() if part is None
                else self._mono + part.clock)

    def _sleep(self, seconds):
        part = current()
        if part is None or part.in_stub or part.untracked:
            self._real_sleep(seconds)
        else:
            self.scheduler.sleep(seconds)

    def _utcnow(self):
        part = current()
        if part is None:
            return self._real_utcnow()
        return datetime.datetime.fromtimestamp(
            self.epoch + part.clock, datetime.timezone.utc).replace(
                tzinfo=None)

    def __enter__(self):
        from lovely_gae import base
        self._real_time, self._real_monotonic = time.time, time.monotonic
        self._real_sleep, self._real_utcnow = time.sleep, base.utcnow
        for name, func in (('time', self._time),
                           ('monotonic', self._monotonic),
                           ('sleep', self._sleep)):
            self._saved.append((time, name, getattr(time, name)))
            setattr(time, name, func)
        real = base.utcnow
        for name, module in list(sys.modules.items()):
            if (name.split('.')[0] == 'lovely_gae'
                    and getattr(module, 'utcnow', None) is real):
                self._saved.append((module, 'utcnow', real))
                module.utcnow = self._utcnow
        return self

    def __exit__(self, *exc_info):
        for owner, name, value in reversed(self._saved):
            setattr(owner, name, value)
        self._saved = []
