"""Checks of the simulated instrument itself, on workloads whose cost is
known: the latency model, overlap of calls in flight, parallel threads,
the counting wrapper, collisions, delayed pushes, and the share of
entities a ``__scatter__`` sample finds.

``run_checks()`` returns rows ``(check, expected, measured, ok)``; the
report prints them and the tests assert them.
"""
import time

from google.appengine.api import datastore
from google.appengine.datastore import datastore_rpc
from google.appengine.ext import db

from lovely_gae import async_, entities

from . import data, noop, simclock, simstub, simwork

__all__ = ['Probe', 'simulate', 'run_checks']

#: Entities of the probe kind in the timing checks.
_KIND_SIZE = 3000
#: Entities of the probe kind in the check of ``__scatter__`` samples.
_SCATTER_KIND = 12800
#: Slack allowed for the Python CPU of the checks' own loops, seconds.
_CPU_SLACK = 0.05


class Probe(db.Model):
    """The entity the checks read and write."""

    value = db.IntegerProperty()

    @classmethod
    def kind(cls):
        return 'BenchProbe'


def _keys(count):
    return [db.Key.from_path(Probe.kind(), number)
            for number in range(1, count + 1)]


def simulate(bodies):
    """Run ``bodies`` (callables of the participant) in a fresh simulation."""
    sim = simstub.Sim(simclock.Scheduler())
    with sim:
        return simwork.run(sim, None, len(bodies), bodies=bodies)


def _one_get(count):
    refs = [entities.ref(key) for key in _keys(count)]
    return simulate([lambda part: entities.get(refs)])


def _sync_calls(threads, calls):
    key = _keys(1)

    def body(part):
        for _ in range(calls):
            db.get(key)
    return simulate([body] * threads)


def _range_query(count):
    start, end = _keys(count + 1)[0], _keys(count + 1)[-1]
    return simulate([lambda part: list(entities.iter_range(
        Probe.kind(), '', start, end, batch_size=count + 1))])


def _burn(seconds):
    key = _keys(1)

    def body(part):
        started = time.thread_time()
        while time.thread_time() - started < seconds:
            pass
        db.get(key)
    return simulate([body])


def _overlapped(count):
    keys = [entities.ref(k) for k in _keys(count)]

    def body(part):
        conn = entities.connection()
        rpcs = [conn.async_get(None, [key]) for key in keys]
        datastore_rpc.MultiRpc.wait_all(rpcs)
    return simulate([body])


def _counted_sequence():
    def body(part):
        db.put([Probe(key_name='c%d' % n, value=n) for n in range(3)])
        list(datastore.Query(Probe.kind(), keys_only=True).Run())
        db.get([db.Key.from_path(Probe.kind(), 'c0'),
                db.Key.from_path(Probe.kind(), 'missing')])
        db.run_in_transaction(lambda: Probe(key_name='t', value=1).put())
    return simulate([body])


def _collision():
    key = db.Key.from_path(Probe.kind(), 'contended')
    Probe(key=key, value=0).put()

    def bump(pause):
        def txn():
            probe = db.get(key)
            time.sleep(pause)  # virtual: the rival reads before this commits
            probe.value += 1
            probe.put()
        return lambda part: db.run_in_transaction(txn)
    result = simulate([bump(1.0), bump(0.5)])
    result['value'] = db.get(key).value
    return result


def _run_deferred():
    sim = simstub.Sim(simclock.Scheduler())
    with sim:
        return simwork.run(
            sim, lambda: async_.defer(noop, args=('later',), countdown=10),
            2)


def _scatter_sample(limit):
    """A keys-only sample ordered by ``__scatter__``, as the library takes
    it (``passes.shard_starts``)."""
    def body(part):
        sample = datastore.Query(Probe.kind(), keys_only=True)
        sample.Order('__scatter__')
        found.extend(sample.Get(limit))
    found = []
    got = simulate([body])
    got['found'] = len(found)
    return got


def _row(name, expected, measured, ok):
    return {'check': name, 'expected': expected, 'measured': measured,
            'ok': bool(ok)}


def run_checks():
    """Each check in a fresh testbed; a list of result rows."""
    rows = []
    latency = simstub.Latency()
    call, entity = latency.call_ms / 1000, latency.entity_ms / 1000
    with data.testbed():
        db.put([Probe(key=key, value=0) for key in _keys(_KIND_SIZE)])
        data.settle()
        started = time.perf_counter()
        got = _range_query(10)
        stub = time.perf_counter() - started
        want = call + 10 * entity
        rows.append(_row(
            'a 10-entity key-range query on a %d-entity kind (the stub '
            'scans the kind: its CPU is not charged)' % _KIND_SIZE,
            '%.4f s' % want, '%.4f s (%.3f s real)' % (got['seconds'], stub),
            want <= got['seconds'] <= want + _CPU_SLACK))
        got = _burn(0.05)
        want = 0.05 + call + entity
        rows.append(_row('50 ms of Python CPU, then a Get of one entity',
                         '%.4f s' % want, '%.4f s' % got['seconds'],
                         want <= got['seconds'] <= want + _CPU_SLACK))
        got = _one_get(300)
        want = call + 300 * entity
        rows.append(_row('one Get of 300 entities, one thread',
                         '%.3f s' % want, '%.3f s' % got['seconds'],
                         want <= got['seconds'] <= want + _CPU_SLACK))
        got = _one_get(1000)
        want = 4 * call + 1000 * entity
        rows.append(_row(
            'a Get of 1,000 entities: 300 a call, the rest deferred',
            '%.3f s, 4 calls, 1000 reads' % want, '%.3f s, %d calls, %d '
            'reads' % (got['seconds'], got['counts']['calls'],
                       got['counts']['reads']),
            want <= got['seconds'] <= want + _CPU_SLACK
            and (got['counts']['calls'], got['counts']['reads']) == (4, 1000)))
        for threads, calls in ((1, 50), (16, 50)):
            got = _sync_calls(threads, calls)
            want = calls * (call + entity)
            rows.append(_row(
                '%d threads x %d Gets of one entity, in parallel'
                % (threads, calls), 'makespan %.3f s, %d calls'
                % (want, threads * calls), 'makespan %.3f s, %d calls'
                % (got['seconds'], got['counts']['calls']),
                want <= got['seconds'] <= want + _CPU_SLACK
                and got['counts']['calls'] == threads * calls))
        got = _overlapped(5)
        want = call + entity
        rows.append(_row('5 Gets in flight at once, then one wait',
                         '%.4f s (max, not sum)' % want,
                         '%.4f s' % got['seconds'],
                         want <= got['seconds'] <= want + _CPU_SLACK))
    with data.testbed(), simstub.production_scatter():
        db.put([Probe(key=key, value=0) for key in _keys(_SCATTER_KIND)])
        data.settle()
        got = _scatter_sample(1024)
        share = _SCATTER_KIND / simstub.SCATTER_SHARE
        slack = 4 * (share * (1 - 1 / simstub.SCATTER_SHARE)) ** 0.5
        want = call + got['found'] * latency.key_ms / 1000
        rows.append(_row(
            'a __scatter__ sample (limit 1,024) of a %d-entity kind: '
            'production\'s share, 1 in %d, charged as keys'
            % (_SCATTER_KIND, simstub.SCATTER_SHARE),
            '%d +- %d keys, %.4f s' % (share, slack, want),
            '%d keys, %.4f s' % (got['found'], got['seconds']),
            abs(got['found'] - share) <= slack
            and want <= got['seconds'] <= want + _CPU_SLACK))
    with data.testbed():
        got = _counted_sequence()['counts']
        want = {'calls': 6, 'Put': 2, 'RunQuery': 1, 'Get': 1,
                'BeginTransaction': 1, 'Commit': 1, 'reads': 3,
                'keys_returned': 3, 'writes': 4, 'commits': 1}
        seen = dict(got['by_method'], **{
            k: got[k] for k in ('calls', 'reads', 'keys_returned', 'writes',
                                'commits')})
        rows.append(_row(
            'put 3 (1 call), keys-only query of 3 (1 read), Get of 2 with '
            '1 missing (2 reads), a transaction putting 1',
            _format(want), _format({k: seen.get(k) for k in want}),
            all(seen.get(k) == v for k, v in want.items())))
    with data.testbed():
        got = _collision()
        counts = got['counts']
        rows.append(_row(
            'two transactions on one entity, interleaved',
            'commits 2, collisions 1, retries 1, value 2',
            'commits %d, collisions %d, retries %d, value %d' % (
                counts['commits'], counts['collisions'],
                counts['txn_retries'], got['value']),
            (counts['commits'], counts['collisions'], counts['txn_retries'],
             got['value']) == (2, 1, 1, 2)))
    with data.testbed():
        got = _run_deferred()
        push = call  # the task-queue add of the push
        stats = got['stats']
        rows.append(_row(
            'a task deferred with countdown 10 s, pushed',
            'ran once, at >= %.2f s' % (10 + push),
            'ran %d, ended at %.3f s' % (stats.tasks, stats.last_end),
            stats.tasks == 1 and stats.last_end >= 10 + push
            and async_.count_tasks() == 0))
    return rows


def _format(counts):
    return ', '.join('%s %s' % item for item in counts.items())
