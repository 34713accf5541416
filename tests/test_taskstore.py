"""The queue's storage contract on the datastore: tasks as stored, the one
index, and leases (a batch of tasks held by one worker, given back when it
dies)."""
import datetime

import pytest
from google.appengine.api import datastore
from google.appengine.ext import db

from lovely_gae import async_, defaults, entities, taskstore
from lovely_gae.base import utcnow
from lovely_gae.tasks import Task

CALLS = []


@async_.task
def record(*args):
    CALLS.append(args)


@async_.task
def defer_record(*args):
    async_.defer(record, args=args)


#: The clock of the test that runs ``slow_then_fail``.
CLOCK = []


@async_.task
def slow_then_fail():
    """A worker so slow that its lease runs out and another worker takes
    its task over, before it fails."""
    [clock] = CLOCK
    clock.advance(defaults.LEASE_SECONDS + 1)
    assert async_.run_tasks(max_tasks=0, clock=clock) == 0  # recovers it
    raise RuntimeError('too late')


@pytest.fixture(autouse=True)
def clear_calls():
    CALLS.clear()


def stored(task):
    """The entity of ``task`` as the datastore holds it."""
    [proto] = entities.get([entities.ref(task.key())])
    return proto


def fields(task):
    return {name: getattr(task, name) for name in Task.__slots__}


def stored_tasks():
    """Every entity of the task kind, done, queued or failed, as a task."""
    return [Task.from_proto(pb)
            for pb in entities.iter_range(taskstore.KIND, defaults.NAMESPACE)]


def lease_entities():
    return list(datastore.Query(taskstore.LEASE_KIND,
                                namespace=defaults.NAMESPACE).Run())


def lease_all(token, now, seconds=60):
    refs = [ref for batch in taskstore.due(now) for ref in batch]
    leased, rest = taskstore.lease(refs, token, now, seconds)
    assert rest == []
    return leased


def test_a_deferred_task_reads_back_as_it_was_made(gae_testbed):
    task = async_.defer(record, args=(1, 'a'), countdown=60, max_attempts=3,
                        retry_delay=2, on_failure=record,
                        on_failure_args=('x',))
    [read] = taskstore.get([task.name])
    assert read.to_proto() == stored(task) == task.to_proto()
    assert fields(read) == fields(task)
    assert (task.status, task.attempts) == ('queued', 0)


def test_a_task_reads_back_with_every_field_set(gae_testbed):
    task = Task('t', due=datetime.datetime(2001, 2, 3, 4, 5, 6, 7),
                func='m:f', payload='{"args": ["\u00fc"]}', on_failure='m:g',
                attempts=3, max_attempts=4, retry_delay=0.5, lease='l',
                error='E' * 2000, created=datetime.datetime(2000, 1, 1))
    assert fields(Task.from_proto(task.to_proto())) == fields(task)
    failed = Task('f', func='m:f')
    assert fields(Task.from_proto(failed.to_proto())) == fields(failed)
    assert failed.status == 'failed'


def test_due_is_the_one_indexed_property_and_unset_ones_are_left_out(
        gae_testbed):
    task = async_.defer(record, args=(1,))
    proto = stored(task)
    assert [p.name for p in proto.property] == ['due']
    assert sorted(p.name for p in proto.raw_property) == [
        'created', 'func', 'max_attempts', 'payload', 'retry_delay']


def test_a_task_deferred_in_a_transaction_commits_with_it(gae_testbed,
                                                          run_tasks):
    def work():
        async_.defer(record, args=('committed',))
    db.run_in_transaction_options(db.create_transaction_options(xg=True),
                                  work)
    assert run_tasks() == 1
    assert CALLS == [('committed',)]


def test_finished_tasks_are_deleted_and_failed_ones_kept(gae_testbed,
                                                         run_tasks):
    for number in range(45):  # more than two leases of tasks
        async_.defer(record, args=(number,))
    async_.defer('builtins:int', args=('x',), max_attempts=1)
    assert run_tasks() == 46
    left = stored_tasks()
    assert [(t.func, t.status) for t in left] == [('builtins:int', 'failed')]
    assert lease_entities() == []


def test_a_lease_takes_its_tasks_out_of_the_queue(gae_testbed, run_tasks):
    task = async_.defer(record, args=(1,))
    now = utcnow()
    [leased] = lease_all('first', now, 30)
    assert (leased.func, leased.attempts, leased.lease) == (
        'tests.test_taskstore:record', 1, 'first')
    assert taskstore.get([task.name]) == [None]
    assert lease_all('second', now) == []
    assert run_tasks(recursive=True) == 0
    # Shown as running: as leased, due when the lease ends.
    [shown] = async_.get_tasks()
    assert (shown.key(), shown.lease, shown.attempts) == (
        task.key(), 'first', 1)
    assert shown.due == now + datetime.timedelta(seconds=30)
    assert async_.count_tasks() == 1
    [holder] = lease_entities()
    assert holder.key().name() == 'first'
    assert holder['due'] == shown.due


def test_of_two_racing_leases_only_one_gets_the_task(gae_testbed,
                                                     monkeypatch):
    task = async_.defer(record)
    refs = [entities.ref(task.key())]
    from_proto = Task.from_proto.__func__
    rival = []

    def with_a_rival(cls, pb):
        # Another worker commits its lease while ours is between read and
        # commit: our commit collides, and the retry finds nothing due.
        if rival == []:
            rival.append(None)
            rival[0] = taskstore.lease(refs, 'rival', utcnow(), 60)[0]
        return from_proto(cls, pb)
    monkeypatch.setattr(Task, 'from_proto', classmethod(with_a_rival))
    assert taskstore.lease(refs, 'ours', utcnow(), 60) == ([], [])
    assert [[t.lease for t in leased] for leased in rival] == [['rival']]
    assert [h.key().name() for h in lease_entities()] == ['rival']


def test_a_finished_lease_leaves_nothing_behind(gae_testbed, run_tasks):
    async_.defer(record, args=(1,))
    async_.defer(record, args=(2,))
    assert run_tasks() == 2
    assert sorted(CALLS) == [(1,), (2,)]
    assert lease_entities() == []
    assert async_.get_tasks() == []


def test_an_expired_lease_gives_its_tasks_back_as_leased(gae_testbed):
    task = async_.defer(record)
    now = utcnow()
    lease_all('dead-worker', now, 60)
    assert taskstore.recover(now + datetime.timedelta(seconds=59)) == 0
    assert taskstore.recover(now + datetime.timedelta(seconds=60)) == 1
    [back] = taskstore.get([task.name])
    assert (back.attempts, back.lease) == (1, 'dead-worker')
    assert lease_entities() == []


def test_the_next_task_is_the_first_due_or_the_first_a_lease_holds(
        gae_testbed):
    assert (taskstore.next_task(), taskstore.next_due()) == (None, None)
    later = async_.defer(record, args=('later',), countdown=60)
    async_.defer(record, args=('now',))
    now = utcnow()
    [leased] = lease_all('worker', now, 30)
    task, held = taskstore.next_task()
    assert (task.name, held) == (leased.name, True)
    assert task.due == taskstore.next_due() == now + datetime.timedelta(
        seconds=30)  # the lease's end: then it may come back
    taskstore.finish('worker')
    task, held = taskstore.next_task()
    assert (task.name, held, task.due) == (later.name, False, later.due)
    assert task.describe() == "record('later')"


def test_a_task_describes_its_call_cut_short():
    from lovely_gae.tasks import make_task
    assert make_task(record, args=(1, 'a' * 80), kwargs={'b': None}
                     ).describe() == "record(1, '%s...)" % ('a' * 53)
    assert make_task(record, kwargs={'b': None}).describe() == (
        'record(b=None)')
    broken = make_task(record)
    broken.payload = '{'
    assert broken.describe() == 'record(?)'


def test_recovery_keeps_what_the_queue_holds_again(gae_testbed):
    task = async_.defer(record, args=('old',))
    now = utcnow()
    lease_all('dead-worker', now, 60)
    again = async_.defer(record, args=('old',), max_attempts=2)
    assert again.key() == task.key()
    assert taskstore.recover(now + datetime.timedelta(seconds=61)) == 1
    [back] = taskstore.get([task.name])
    assert (back.attempts, back.max_attempts) == (0, 2)


def test_released_tasks_are_queued_as_before_their_lease(gae_testbed,
                                                         run_tasks):
    for number in range(3):
        async_.defer(record, args=(number,))
    assert run_tasks(max_tasks=1) == 1
    assert lease_entities() == []
    waiting = async_.get_tasks()
    assert [(t.attempts, t.lease) for t in waiting] == [(0, None)] * 2
    assert all(t.due <= utcnow() for t in waiting)
    assert run_tasks() == 2
    assert sorted(CALLS) == [(0,), (1,), (2,)]


def test_a_lease_that_was_taken_over_writes_no_retry(gae_testbed, run_tasks,
                                                     task_clock):
    CLOCK[:] = [task_clock]
    async_.defer(slow_then_fail)
    assert run_tasks(clock=task_clock) == 1  # failed after the take-over
    [after] = async_.get_tasks()
    assert (after.error, after.attempts) == (None, 1)
    assert async_.count_leased() == 0 and lease_entities() == []


def test_work_deferred_again_before_its_lease_ran_it_runs_once(
        gae_testbed, run_tasks):
    async_.defer(defer_record, args=('a',))
    async_.defer(record, args=('a',))  # in the same lease, after the first
    assert run_tasks(recursive=True) == 2
    assert CALLS == [('a',)]


def test_work_deferred_again_after_its_lease_ran_it_runs_again(
        gae_testbed, run_tasks):
    async_.defer(record, args=('b',))
    async_.defer(defer_record, args=('b',))
    assert run_tasks(recursive=True) == 3
    assert CALLS == [('b',), ('b',)]


def test_a_lease_holds_what_fits_and_hands_back_the_rest(gae_testbed,
                                                         run_tasks,
                                                         monkeypatch):
    for number in range(5):
        async_.defer(record, args=(number,))
    monkeypatch.setattr(taskstore, 'HOLD_BYTES', 1)  # one task per lease
    refs = [entities.ref(t.key()) for t in async_.get_tasks()]
    leased, rest = taskstore.lease(refs, 'small', utcnow(), 60)
    assert len(leased) == 1 and rest == refs[1:]
    assert run_tasks() == 4
    assert lease_entities() == [lease_entities()[0]]  # 'small' still holds
    assert len(CALLS) == 4
