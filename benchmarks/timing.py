"""Clocks with a budget: a measurement that runs too long stops and says so."""
import gc
import statistics
import time

from lovely_gae import async_

__all__ = ['OverBudget', 'Budget', 'Sample', 'timed', 'summarize', 'drain']


class OverBudget(Exception):
    """A measurement ran out of time after ``fraction`` of its work."""

    def __init__(self, elapsed, fraction):
        super().__init__('over budget after %.1f s (%.0f%% done)'
                         % (elapsed, 100 * fraction))
        self.elapsed = elapsed
        self.fraction = fraction


class Budget:
    """A ``perf_counter`` stopwatch that knows how long it may run."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.started = time.perf_counter()
        self.stopped = None

    def elapsed(self):
        end = self.stopped if self.stopped is not None else time.perf_counter()
        return end - self.started

    def stop(self):
        """Freeze the clock: what follows (checks, counting) is not timed."""
        if self.stopped is None:
            self.stopped = time.perf_counter()
        return self.elapsed()

    def remaining(self):
        return self.seconds - self.elapsed()

    def exceeded(self):
        return self.remaining() <= 0

    def check(self, fraction):
        """Raise ``OverBudget`` if time is up; ``fraction`` is work done."""
        if self.exceeded():
            raise OverBudget(self.stop(), fraction)


class Sample:
    """One timed run: seconds, what it returned, whether it finished."""

    def __init__(self, seconds, value=None, over_budget=False, fraction=1.0):
        self.seconds = seconds
        self.value = value
        self.over_budget = over_budget
        self.fraction = fraction

    @property
    def estimate(self):
        """Seconds the whole work would take, extrapolated when it stopped."""
        if not self.over_budget:
            return self.seconds
        return self.seconds / self.fraction if self.fraction > 0 else None


def timed(func, budget_seconds):
    """Run ``func(budget)``; its budget starts now, after a collection.

    ``func`` calls ``budget.stop()`` when the timed work is done (else the
    return stops the clock) and raises ``OverBudget`` when it runs out.

    The cyclic garbage collector is off while the clock runs: a collection
    walks the stub's datastore, millions of objects that a real datastore
    keeps outside the process (0.4 s at 50,000 entities), and they grow
    with every entity a side writes, so collections cost more the fuller
    the stub: with the collector on, the floor's puts took 1.23x longer
    per entity at 100,000 entities than at 10,000, and 1.05x with it off.
    Reference counting still frees what either side drops; only cycles
    wait for the collection made after the clock stops.
    """
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    budget = Budget(budget_seconds)
    try:
        value = func(budget)
        seconds = budget.stop()
    except OverBudget as exc:
        return Sample(exc.elapsed, over_budget=True, fraction=exc.fraction)
    finally:
        if enabled:
            gc.enable()
        gc.collect()
    return Sample(seconds, value)


def summarize(samples):
    """``(median seconds, lower bound, over budget)`` of repeated samples.

    An over-budget sample counts with its extrapolated time; its lower
    bound is the time it actually ran.
    """
    over = any(s.over_budget for s in samples)
    estimates = [s.estimate for s in samples]
    if any(e is None for e in estimates):
        return None, max(s.seconds for s in samples), True
    lower = statistics.median(s.seconds for s in samples)
    return statistics.median(estimates), lower, over


def drain(budget):
    """Run every queued task within ``budget``; the library's one code path."""
    remaining = budget.remaining()
    if remaining <= 0:
        return 0
    return async_.run_tasks(recursive=True, wait=True, deadline=remaining)
