"""The stub in production's shoes: a latency model and a counting wrapper.

``Sim.install`` puts ``SimRPC`` between the SDK and the datastore (and
memcache) stubs of the active testbed. A participant's call (see
``simclock``) runs against the stub when the participant's turn comes in
virtual time (calls reach the stub in the order they are issued), costs no
virtual time for the stub's own CPU, and completes ``Latency.cost`` later:
the thread goes on until it waits on the call, and then pays
``max(now, completion)``. So a thread that issues five queries and then
waits pays for the slowest, not for the sum, as with real RPCs.

``Counts`` is what the wrapper saw, billed as Firestore in Datastore mode
bills: a Get reads every key asked (found or not); a query reads each
entity it returns, at least one per call; a keys-only query reads one
entity per call and returns keys (small operations), counted apart; writes
are entities put plus keys deleted, counted when they are applied (outside a
transaction at the call, inside one at its commit). Calls of participants
that the harness marks ``untracked`` and of threads that are not
participants run straight against the stub, uncounted and free.
"""
import collections
import contextlib
import tracemalloc
from unittest import mock

from google.appengine.api import apiproxy_rpc, apiproxy_stub_map
from google.appengine.datastore import datastore_pb, datastore_stub_util
from google.appengine.runtime import apiproxy_errors

from lovely_gae import defaults

from . import simclock

__all__ = ['Latency', 'MemoryTracker', 'Sim', 'SCATTER_SHARE',
           'production_scatter']

_CONCURRENT = datastore_pb.Error.CONCURRENT_TRANSACTION
_WRITES = ('Put', 'Delete')
_QUERIES = ('RunQuery', 'Next')


#: The share of entities production's datastore gives a ``__scatter__``
#: property: 1 in 128, about 0.78% (appengine-mapreduce's wiki,
#: "ScatterPropertyImplementation"). The SDK's stub gives it to 1 in 2
#: (``datastore_stub_util._SCATTER_PROPORTION``, 32768 of 65536).
SCATTER_SHARE = 128


@contextlib.contextmanager
def production_scatter():
    """While inside, the stub sets ``__scatter__`` on production's share of
    the entities it stores (or loads from a file), not on half of them: a
    sample ordered by it returns, and is charged for, the keys production
    would return, from the same hash of the key (the stub's, kept where it
    falls below production's share)."""
    with mock.patch.object(datastore_stub_util, '_SCATTER_PROPORTION',
                           65536 // SCATTER_SHARE):
        yield


class Latency:
    """What a call costs in virtual seconds.

    A datastore call: ``call_ms`` plus ``entity_ms`` per entity read or
    written, and ``key_ms`` per key a keys-only query returns (by default
    charged as an entity: issue 11's model); a query's skipped results are
    charged as entities (they are scanned all the same). A memcache call:
    ``memcache_ms``.
    """

    def __init__(self, call_ms=30.0, entity_ms=0.5, memcache_ms=1.0,
                 key_ms=None):
        self.call_ms = call_ms
        self.entity_ms = entity_ms
        self.key_ms = entity_ms if key_ms is None else key_ms
        self.memcache_ms = memcache_ms

    def datastore(self, entities, keys=0):
        return (self.call_ms + self.entity_ms * entities
                + self.key_ms * keys) / 1000.0

    def memcache(self):
        return self.memcache_ms / 1000.0

    def describe(self):
        keys = ('charged as entities' if self.key_ms == self.entity_ms else
                '%g ms a key' % self.key_ms)
        return ('%g ms a datastore call + %g ms an entity read or written '
                '(a keys-only query\'s keys %s, skipped results as '
                'entities); memcache %g ms a call'
                % (self.call_ms, self.entity_ms, keys, self.memcache_ms))


class Counts:
    """Datastore work seen by the wrapper, as ``collections.Counter``s."""

    FIELDS = ('reads', 'reads_library', 'keys_returned', 'skipped',
              'writes', 'writes_library', 'writes_user', 'commits',
              'collisions', 'transactions', 'txn_retries', 'memcache_calls',
              'errors')

    def __init__(self):
        self.calls = collections.Counter()
        self.totals = collections.Counter()
        self._pending = {}   # transaction handle: writes (library, user)
        self._cursors = {}   # query cursor: (namespace, keys_only)

    @property
    def call_count(self):
        return sum(self.calls.values())

    def as_dict(self):
        out = {name: self.totals[name] for name in self.FIELDS}
        out['calls'] = self.call_count
        out['by_method'] = dict(sorted(self.calls.items()))
        return out

    def _write(self, namespaces, transaction):
        library = sum(1 for ns in namespaces if ns == defaults.NAMESPACE)
        user = len(namespaces) - library
        if transaction is not None:
            old = self._pending.get(transaction, (0, 0))
            self._pending[transaction] = (old[0] + library, old[1] + user)
        else:
            self._applied(library, user)

    def _applied(self, library, user):
        self.totals['writes'] += library + user
        self.totals['writes_library'] += library
        self.totals['writes_user'] += user

    def _read(self, count, namespace):
        self.totals['reads'] += count
        if namespace == defaults.NAMESPACE:
            self.totals['reads_library'] += count

    def record(self, method, request, response, error, part):
        """Count one datastore call; returns ``(entities, keys)`` it is
        charged for."""
        self.calls[method] += 1
        if error is not None:
            self.totals['errors'] += 1
        concurrent = (isinstance(error, apiproxy_errors.ApplicationError)
                      and error.application_error == _CONCURRENT)
        txn = (request.transaction.handle
               if method in ('Get', 'Put', 'Delete')
               and request.HasField('transaction') else None)
        if method == 'Get':  # keys past 300 come back deferred, unread
            if error is not None:
                return 0, 0
            for result in response.entity:
                key = (result.entity.key if result.HasField('entity') else
                       result.key if result.HasField('key') else
                       request.key[0])
                self._read(1, key.name_space)
            return len(response.entity), 0
        if method in _WRITES and error is None:
            keys = ([e.key for e in request.entity] if method == 'Put'
                    else list(request.key))
            self._write([key.name_space for key in keys], txn)
            return len(keys), 0
        if method in _QUERIES and error is None:
            return self._query(method, request, response)
        if method == 'BeginTransaction':
            self.totals['transactions'] += 1
            if getattr(part, 'collided', False):
                self.totals['txn_retries'] += 1
                part.collided = False
        elif method == 'Commit':
            library, user = self._pending.pop(request.handle, (0, 0))
            if error is None:
                self.totals['commits'] += 1
                self._applied(library, user)
            elif concurrent:
                self.totals['collisions'] += 1
                part.collided = True
        elif method == 'Rollback':
            self._pending.pop(request.handle, None)
        if concurrent and method != 'Commit':
            self.totals['collisions'] += 1
            part.collided = True
        return 0, 0

    def _query(self, method, request, response):
        if method == 'RunQuery':
            where = (request.name_space, request.keys_only)
        else:
            where = self._cursors.pop(request.cursor.cursor, ('', False))
        if response.more_results and response.HasField('cursor'):
            self._cursors[response.cursor.cursor] = where
        returned = len(response.result)
        self.totals['skipped'] += response.skipped_results
        if where[1] or response.keys_only:
            self._read(1, where[0])
            self.totals['keys_returned'] += returned
            return response.skipped_results, returned
        self._read(max(1, returned), where[0])
        return returned + response.skipped_results, 0


class MemoryTracker:
    """Peak Python memory of the code between stub calls, per task.

    tracemalloc sees the whole process, the stub's datastore included, and
    a stub query allocates in proportion to the kind. So each stub call's
    transient peak is cut out (``reset_peak`` after it) and what the call
    leaves allocated is booked to the stub, not to the task. Blind spot:
    protobuf messages (upb) are allocated outside Python's allocator and
    are invisible to tracemalloc; their Python wrappers are seen.
    """

    def __init__(self):
        self.stub = 0
        self.base = None
        self.peak = 0
        self.peaks = []

    def start_task(self):
        tracemalloc.reset_peak()
        self.base = tracemalloc.get_traced_memory()[0] - self.stub
        self.peak = 0

    def _seen(self):
        if self.base is not None:
            current, peak = tracemalloc.get_traced_memory()
            self.peak = max(self.peak, peak - self.stub - self.base)
            return current
        return tracemalloc.get_traced_memory()[0]

    def before_call(self):
        return self._seen()

    def after_call(self, before):
        self.stub += tracemalloc.get_traced_memory()[0] - before
        tracemalloc.reset_peak()

    def end_task(self, name=None):
        self._seen()
        self.peaks.append((self.peak, name))
        self.base = None


class SimRPC(apiproxy_rpc.RPC):
    """An RPC that runs in virtual time (see the module's docstring)."""

    def __init__(self, *args, sim=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.sim = sim
        self.sent = False
        self.done_at = None

    def _MakeCallImpl(self):
        self._state = apiproxy_rpc.RPC.RUNNING
        self.done_at = self.sim.issue(self)

    def _WaitImpl(self):
        if not self.sent:  # not a participant's: sent now, as by the stub
            self.sent = True
            self._CaptureTrace(self._SendRequest)
        self.sim.wait(self)
        self._state = apiproxy_rpc.RPC.FINISHING
        if self.callback:
            self._CaptureTraceAndReraise(self.callback)
        return True


class Sim:
    """The instrument: a scheduler, a latency model, counts, memory."""

    SERVICES = ('datastore_v3', 'memcache')

    def __init__(self, scheduler, latency=None, memory=None):
        self.scheduler = scheduler
        self.latency = latency or Latency()
        self.memory = memory
        self.counts = Counts()
        self._stubs = []

    def install(self):
        """Route the active testbed's stub calls through ``SimRPC``."""
        for service in self.SERVICES:
            stub = apiproxy_stub_map.apiproxy.GetStub(service)
            if stub is None:
                continue
            stub.CreateRPC = (lambda stub=stub:
                              SimRPC(stub=stub, sim=self))
            self._stubs.append(stub)
        return self

    def uninstall(self):
        for stub in self._stubs:
            del stub.CreateRPC
        self._stubs = []

    def __enter__(self):
        return self.install()

    def __exit__(self, *exc_info):
        self.uninstall()

    def issue(self, rpc):
        """Run the call when its turn comes; return when it completes."""
        part = simclock.current()
        if part is None or part.untracked:
            return None  # sent at the wait, as the plain stub does
        scheduler = self.scheduler
        scheduler.turn(part)  # calls reach the stub in issue order
        before = self.memory.before_call() if self.memory else None
        issued = part.clock
        part.in_stub = True
        try:
            rpc.sent = True
            rpc._CaptureTrace(rpc._SendRequest)
        finally:
            part.in_stub = False
        if self.memory:
            self.memory.after_call(before)
        if rpc.package == 'datastore_v3':
            entities, keys = self.counts.record(
                rpc.call, rpc.request, rpc.response, rpc.exception, part)
            cost = self.latency.datastore(entities, keys)
        else:
            self.counts.totals['memcache_calls'] += 1
            cost = self.latency.memcache()
        part.calls += 1
        scheduler.mark(part)  # the stub's CPU and ours are not charged
        return issued + cost

    def wait(self, rpc):
        """The caller waits for ``rpc``: its clock moves to the completion."""
        part = simclock.current()
        if rpc.done_at is None or part is None:
            return
        scheduler = self.scheduler
        scheduler.charge(part)
        if rpc.done_at > part.clock:
            scheduler.advance(part, rpc.done_at - part.clock)
        scheduler.turn(part)
