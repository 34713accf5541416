"""Fixtures shared by the test modules."""
import atexit
import contextlib
import io
import os
import shutil
import tempfile

import pytest
from google.appengine.datastore import datastore_stub_util
from google.appengine.ext import db, testbed
from google.appengine.runtime import apiproxy_errors

from lovely_gae import async_, defaults, entities
from lovely_gae.base import WIDE
from lovely_gae.snapshot import api

# Tests queue these builtins as tasks: registered, as an app registers its
# own task functions.
async_.register(print, int)


class Dummy(db.Model):
    title = db.StringProperty()


class Yummy(db.Model):
    title = db.StringProperty()


class Unread:
    """A request body (``wsgi.input``) that must not be read."""

    def read(self, *args):
        raise AssertionError('the body was read')
    readline = readlines = read


CREATE = '/lovely.gae/snapshot.CreateSnapshotHandler'
SNAPSHOTS = '/lovely.gae/snapshots'


@pytest.fixture
def app(gae_testbed):
    """The app, in-process with webtest."""
    from webtest import TestApp
    from lovely_gae.snapshot import getApp
    return TestApp(getApp())


@pytest.fixture
def make_entities(gae_testbed):
    """``make_entities(model, n)``: put n entities titled 0..n-1."""
    def make(model, count, **values):
        entities = [model(title=str(i), **values) for i in range(count)]
        return db.put(entities, config=WIDE)
    return make


@pytest.fixture
def datastore_calls(gae_testbed, monkeypatch):
    """The names of the datastore calls made from now on, in order."""
    stub = gae_testbed.get_stub('datastore_v3')
    calls = []
    original = stub.MakeSyncCall

    def counting(service, call, request, response, request_id=None):
        calls.append(call)
        return original(service, call, request, response, request_id)
    monkeypatch.setattr(stub, 'MakeSyncCall', counting)
    return calls


@pytest.fixture
def query_reads(gae_testbed, monkeypatch):
    """The entities (or keys) each query call returns from now on, a
    number a call, in order."""
    stub = gae_testbed.get_stub('datastore_v3')
    read, original = [], stub.MakeSyncCall

    def counting(service, call, request, response, request_id=None):
        result = original(service, call, request, response, request_id)
        if call in ('RunQuery', 'Next'):
            read.append(len(response.result))
        return result
    monkeypatch.setattr(stub, 'MakeSyncCall', counting)
    return read


@pytest.fixture
def finished_snapshot(gae_testbed, run_tasks):
    """``finished_snapshot(kinds=None, **kw)``: a snapshot, all tasks run."""
    def make(kinds=None, **kwargs):
        snap = api.create_snapshot(kinds, **kwargs)
        run_tasks(recursive=True)
        snap = api.get_snapshot(snap.id)
        assert snap.status == snap.STATUS_FINISHED, snap.error
        return snap
    return make


class FaultyDatastore:
    """Make every ``every``-th call of ``methods`` fail once, as production
    does now and then (``DeadlineExceededError`` before the call is made)."""

    def __init__(self, stub, every, methods):
        self.stub, self.every, self.methods = stub, every, set(methods)
        self.calls = self.injected = 0
        self.enabled = True
        self._original = stub.MakeSyncCall
        stub.MakeSyncCall = self._call

    def _call(self, service, call, request, response, request_id=None):
        if self.enabled and call in self.methods:
            self.calls += 1
            if self.calls % self.every == 0:
                self.injected += 1
                raise apiproxy_errors.DeadlineExceededError(
                    'injected fault in %s' % call)
        return self._original(service, call, request, response, request_id)

    def restore(self):
        self.stub.MakeSyncCall = self._original


@pytest.fixture
def faulty_datastore(gae_testbed):
    """``faulty_datastore(every=6, methods=('Put', 'Delete', 'Commit'))``."""
    made = []

    def make(every=6, methods=('Put', 'Delete', 'Commit')):
        fault = FaultyDatastore(gae_testbed.get_stub('datastore_v3'), every,
                                methods)
        made.append(fault)
        return fault
    yield make
    for fault in made:
        fault.restore()


@pytest.fixture
def fast_retries(monkeypatch):
    """Retry failed tasks at once, so tests need not wait for backoff."""
    monkeypatch.setattr(defaults, 'RETRY_DELAY', 0.0)


def markers(job):
    """The key names of the ``completion`` markers of ``job`` stored now."""
    from lovely_gae import completion
    return sorted(done.key().name() for done in completion.Done.all()
                  if done.key().name().startswith(job + ':'))


def queued(name):
    """The queued tasks of the task function called ``name``."""
    return [task for task in async_.get_tasks()
            if task.func.endswith(':' + name)]


def until_queued(run_tasks, name):
    """Run tasks one at a time until some of ``name`` are queued; those."""
    while not queued(name):
        assert run_tasks(max_tasks=1) == 1
    return queued(name)


def answer_lost(monkeypatch, module, name, meanwhile=None):
    """Make the first transaction that calls ``module.name`` commit, run
    ``meanwhile`` (say, the tasks it queued), then raise ``Timeout``: a
    commit applied whose answer was lost, which ``base.transaction`` tries
    again. Returns a list that holds True once it happened."""
    from google.appengine.api import datastore_errors
    real, real_run = getattr(module, name), db.run_in_transaction_options
    calling, lost = [], []

    def called(*args, **kwargs):
        calling.append(True)
        return real(*args, **kwargs)

    def run(options, func, *args, **kwargs):
        calling.clear()
        result = real_run(options, func, *args, **kwargs)
        if calling and not lost:  # applied, and ...
            lost.append(True)
            if meanwhile is not None:
                meanwhile()
            raise datastore_errors.Timeout('the answer was lost')
        return result
    monkeypatch.setattr(module, name, called)
    monkeypatch.setattr(db, 'run_in_transaction_options', run)
    return lost


def all_bytes(kinds, namespace=''):
    """Every entity of ``kinds`` as encoded bytes, sorted."""
    return sorted(e.SerializeToString() for kind in kinds
                  for e in entities.iter_range(kind, namespace))


@pytest.fixture
def ticking_clock(monkeypatch):
    """Each look at a pass's or a shard task's clock takes a second."""
    import types
    from lovely_gae.snapshot.work import passes, shards
    clock = iter(range(10 ** 6))
    ticking = types.SimpleNamespace(monotonic=lambda: next(clock))
    monkeypatch.setattr(passes, 'time', ticking)
    monkeypatch.setattr(shards, 'time', ticking)


@pytest.fixture
def unsharded(monkeypatch):
    """Kinds of any size stay one shard: ranges 0 to n - 1."""
    monkeypatch.setattr(defaults, 'SHARDS', 1)


@pytest.fixture
def large(monkeypatch, unsharded):
    """Restores too large to be checked in the call that starts them, their
    tasks as large as allowed (one worker: waves of one task)."""
    from lovely_gae.snapshot.work import restore, waves
    monkeypatch.setattr(waves, 'INLINE_RANGES', 1)
    monkeypatch.setattr(waves, 'CHECK_RANGES', 2)
    monkeypatch.setattr(waves, 'WRITE_RANGES', 2)
    monkeypatch.setattr(restore, 'FAN_OUT', 2)


@pytest.fixture
def sharded(monkeypatch):
    """Kinds with 20 sampled keys are cut into 4 shards."""
    from lovely_gae.snapshot.work import passes
    monkeypatch.setattr(passes, 'SAMPLE', 20)
    monkeypatch.setattr(defaults, 'SHARDS', 4)


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A datastore file for the CLI, in a working directory of its own."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv('GAE_APPLICATION', raising=False)
    return str(tmp_path / 'data.datastore')


@pytest.fixture
def empty_store(store):
    """``store``, an empty datastore file: commands that only read need
    one to exist."""
    open(store, 'wb').close()
    return store


_DEMO = []


def demo_into(store):
    """Fill the datastore file ``store`` as ``lovely-gae demo`` leaves it.

    The demo runs once a test run, in a directory of its own; later calls
    copy the file it left (``tests/test_cli.py`` runs the demo itself)."""
    if not _DEMO:
        where = tempfile.mkdtemp(prefix='lovely-gae-demo-')
        atexit.register(shutil.rmtree, where, True)
        path = os.path.join(where, 'demo.datastore')
        here = os.getcwd()
        os.chdir(where)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                assert run_cli(path, 'demo') == 0
        finally:
            os.chdir(here)
        _DEMO.append(path)
    shutil.copyfile(_DEMO[0], store)


def run_cli(store, *args):
    """``lovely-gae --datastore STORE ARGS...``; its exit status."""
    from lovely_gae import cli
    return cli.main(['--datastore', store] + list(args))


def sdk_file_testbed(app_id, path, save_changes=False):
    """A testbed whose datastore the SDK's own file stub loads from
    ``path``, as the development server does: to show that a file of ours
    is one it reads, and one it wrote is one we read. The SDK unpickles the
    file, so only for files the test itself wrote."""
    bed = testbed.Testbed()
    bed.activate()
    bed.setup_env(app_id=app_id, overwrite=True)
    bed.init_datastore_v3_stub(
        datastore_file=path, save_changes=save_changes,
        consistency_policy=datastore_stub_util.PseudoRandomHRConsistencyPolicy(
            probability=1))
    bed.init_memcache_stub()
    return bed
