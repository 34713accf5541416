import datetime
import logging

import pytest
from google.appengine.ext import db

from lovely_gae import async_, tasks, taskstore
from lovely_gae.exceptions import NotSerializable, NotYet, TaskError
from lovely_gae.serializers import JSONSerializer

CALLS = []


@async_.task
def record(*args, **kwargs):
    CALLS.append((args, kwargs))


@async_.task
def enqueue_child(value):
    async_.defer(record, args=(value,))


@pytest.fixture(autouse=True)
def clear_calls():
    CALLS.clear()


def test_arguments_reach_the_function_as_given(gae_testbed, run_tasks):
    key = db.Key.from_path('Kind', 7, namespace='ns')
    when = datetime.datetime(2020, 1, 2, 3, 4, 5, 6)
    async_.defer(record, args=(1, 'zwölf', key), kwargs={
        'when': when, 'raw': b'\x00\xff', 'nested': {'a': [1.5, None]}})
    assert run_tasks() == 1
    assert CALLS == [((1, 'zwölf', key), {
        'when': when, 'raw': b'\x00\xff', 'nested': {'a': [1.5, None]}})]


def test_tasks_use_key_names_and_leave_the_id_sequence_alone(
        gae_testbed, run_tasks):
    first = db.Expando()
    first.put()
    for i in range(5):
        async_.defer(record, args=(i,))
    run_tasks()
    second = db.Expando()
    second.put()
    assert second.key().id() == first.key().id() + 1


def test_once_only_queues_the_same_work_once(gae_testbed, run_tasks):
    async_.defer(record, args=(1,))
    async_.defer(record, args=(1,))
    async_.defer(record, args=(2,))
    assert len(async_.get_tasks()) == 2
    assert run_tasks() == 2
    assert sorted(CALLS) == [((1,), {}), ((2,), {})]


def test_run_tasks_runs_only_what_was_due_unless_recursive(
        gae_testbed, run_tasks):
    async_.defer(enqueue_child, args=('x',))
    assert run_tasks() == 1
    assert CALLS == []
    assert run_tasks() == 1
    assert CALLS == [(('x',), {})]
    async_.defer(enqueue_child, args=('y',))
    assert run_tasks(recursive=True) == 2


def test_countdown_delays_a_task(gae_testbed, run_tasks, task_clock):
    async_.defer(record, countdown=3600)
    assert run_tasks(recursive=True, clock=task_clock) == 0
    assert len(async_.get_tasks()) == 1
    task_clock.advance(3599)
    assert run_tasks(clock=task_clock) == 0
    task_clock.advance(1)
    assert run_tasks(clock=task_clock) == 1
    assert CALLS == [((), {})]


def test_waiting_for_retries_advances_the_clock_given(gae_testbed, run_tasks,
                                                      task_clock):
    async_.defer('builtins:int', args=('x',), max_attempts=3, retry_delay=60)
    before = task_clock.now()
    assert run_tasks(recursive=True, wait=True, clock=task_clock) == 3
    assert async_.get_tasks() == []
    [failed] = async_.get_failed_tasks()
    assert failed.attempts == 3
    # Waited out both backoffs (60 s, then 120 s), and not much longer.
    waited = (task_clock.now() - before).total_seconds()
    assert 180 <= waited < 185


def test_defer_in_a_transaction_rolls_back_with_it(gae_testbed, run_tasks):
    def work():
        async_.defer(record, args=('never',))
        raise db.Rollback()
    db.run_in_transaction_options(db.create_transaction_options(xg=True),
                                  work)
    assert async_.get_tasks() == []


def test_only_registered_functions_can_be_deferred(gae_testbed):
    def local():
        pass
    with pytest.raises(TaskError):
        async_.task(local)
    for func in (local, 'no_colon_here', 'os:system', 'lovely_gae.cli:main',
                 'lovely_gae.nowhere:func', unregistered):
        with pytest.raises(TaskError):
            async_.defer(func)
    with pytest.raises(TaskError, match="'os:system' is not registered"):
        async_.defer(record, on_failure='os:system')
    assert async_.get_tasks() == []


def unregistered(*args):
    CALLS.append(('unregistered', args))


def test_a_stored_task_naming_foreign_code_fails_and_runs_nothing(
        gae_testbed, run_tasks, monkeypatch):
    """Data that gets into the queue cannot name code to run."""
    import os
    ran = []
    monkeypatch.setattr(os, 'system', lambda *args: ran.append(args))
    forged = [async_.Task('forged-%d' % i, func=name,
                          payload='{"args": ["touch /tmp/owned"]}',
                          due=datetime.datetime(2000, 1, 1),
                          max_attempts=1, retry_delay=0.0,
                          on_failure=failure)
              for i, (name, failure) in enumerate([
                  ('os:system', None),
                  ('tests.test_async:unregistered', None),
                  ('builtins:int', 'os:system')])]
    async_.defer_many(forged)
    assert run_tasks() == 3
    assert ran == [] and CALLS == []
    errors = sorted(task.error for task in async_.get_failed_tasks())
    assert len(errors) == 3
    assert errors[1] == ("lovely_gae.exceptions.TaskError: task function "
                         "'os:system' is not registered (see "
                         "lovely_gae.async_.task)")
    assert "'tests.test_async:unregistered' is not registered" in errors[2]


def test_arguments_that_are_not_json_are_refused(gae_testbed):
    with pytest.raises(NotSerializable):
        async_.defer(record, args=(object(),))


def test_serializer_round_trip():
    value = {'k': [1, 'a', None, True, 2.5, b'b',
                   datetime.datetime(2000, 1, 1)]}
    assert JSONSerializer.loads(JSONSerializer.dumps(value)) == value


def test_arguments_too_big_for_a_lease_are_refused(gae_testbed):
    with pytest.raises(TaskError, match='at most 1000000 fit'):
        async_.defer(record, args=('x' * 1000000,))
    assert async_.get_tasks() == []


SEEN_THREADS = []
#: Set once a task ran in another thread than the first task's.
ELSEWHERE = []


@async_.task
def note_thread(number):
    import threading
    SEEN_THREADS.append(threading.current_thread().name)
    if len(set(SEEN_THREADS)) > 1:
        ELSEWHERE[0].set()
    if number < 6:
        async_.defer(note_thread, args=(number + 1,))
        async_.defer(note_thread, args=(number + 10,))
    if number == 0:  # another worker takes what this one queued
        assert ELSEWHERE[0].wait(timeout=60)  # a bound for a loaded machine


def test_tasks_run_in_several_threads_at_once(gae_testbed):
    import threading
    SEEN_THREADS.clear()
    ELSEWHERE[:] = [threading.Event()]
    async_.defer(note_thread, args=(0,))
    ran = async_.run_in_threads(4, recursive=True)
    assert ran == len(SEEN_THREADS) == 13  # 0..6, and 10..15
    assert len(set(SEEN_THREADS)) > 1
    assert async_.get_tasks() == []


MEETING = []


@async_.task
def meet(number):
    MEETING[0].wait()  # breaks unless another worker runs its task meanwhile


def test_threads_share_what_is_due_rather_than_one_leasing_it_all(
        gae_testbed):
    import threading
    MEETING[:] = [threading.Barrier(2, timeout=5)]
    for number in range(2):
        async_.defer(meet, args=(number,))
    assert async_.run_in_threads(2) == 2
    assert async_.get_tasks() == [] and async_.get_failed_tasks() == []


def spy_on_leases(monkeypatch, during=None):
    """The key names each ``taskstore.lease`` call is asked for, in order;
    ``during()`` runs inside the first call, before it reads anything."""
    lease, asked = taskstore.lease, []

    def spied(refs, *args, **kwargs):
        asked.append([ref.path.element[-1].name for ref in refs])
        if during is not None and len(asked) == 1:
            during()
        return lease(refs, *args, **kwargs)
    monkeypatch.setattr(taskstore, 'lease', spied)
    return asked


def test_threads_sharing_the_queue_lease_different_tasks(
        gae_testbed, monkeypatch, task_clock):
    """A thread picks among the due tasks the ones no other thread of its
    process is leasing or running: the two never collide on one task."""
    for number in range(2):
        async_.defer(record, args=(number,))
    # Both would pick the same task if it were left to chance.
    monkeypatch.setattr(async_.random, 'choice', lambda seq: seq[0])
    monkeypatch.setattr(async_.random, 'shuffle', lambda seq: None)
    other = []  # another thread's round, while ours is leasing

    def another_thread():
        other.append(async_.run_tasks(shared=True, max_tasks=1,
                                      clock=task_clock))
    asked = spy_on_leases(monkeypatch, another_thread)
    assert async_.run_tasks(shared=True, max_tasks=1, clock=task_clock) == 1
    assert other == [1]
    assert len(asked) == 2 and asked[0] != asked[1]
    assert sorted(CALLS) == [((0,), {}), ((1,), {})]


OTHERS = {}


@async_.task
def take_the_other(number):
    """Run as another worker leases the other task meanwhile."""
    taskstore.delete([OTHERS[1 - number]])


def test_a_shared_worker_reads_what_is_due_again_after_each_task(
        gae_testbed, monkeypatch, task_clock):
    """What was due before a task ran is stale after it: another worker
    took it. Trying it would cost a transaction that leases nothing."""
    for number in range(2):
        OTHERS[number] = async_.defer(take_the_other, args=(number,)).name
    asked = spy_on_leases(monkeypatch)
    assert async_.run_tasks(shared=True, clock=task_clock) == 1
    assert len(asked) == 1 and async_.get_tasks() == []


@async_.task
def refuse(text):
    raise ValueError(text)


def test_a_long_error_is_stored_with_the_retry(gae_testbed, run_tasks,
                                              task_clock):
    """An error as long as the arguments it repeats is kept in part, so
    that the task still fits an entity: it is retried, then fails, as any
    task does (storing it whole failed, and the task ran for ever)."""
    # Arguments well inside tasks.MAX_PAYLOAD; the error repeats them, as
    # ValueError(repr(value)) does.
    async_.defer(refuse, args=('x' * 600000,), max_attempts=2)
    assert run_tasks(clock=task_clock) == 1
    [task] = async_.get_tasks()
    assert task.attempts == 1 and task.error.startswith('ValueError')
    task_clock.advance(3600)
    assert run_tasks(clock=task_clock) == 1
    [failed] = async_.get_failed_tasks()
    assert failed.error.startswith('ValueError')
    assert len(failed.error) <= tasks.MAX_ERROR and ' ... ' in failed.error


@async_.task
def needs(text):
    if not CALLS:
        CALLS.append(text)
        raise NotYet('what %s needs is not stored yet' % text)


@pytest.mark.parametrize('pushed', [False, True])
def test_a_task_that_came_too_soon_is_tried_again_without_a_warning(
        gae_testbed, run_tasks, task_clock, caplog, pushed):
    """``NotYet``: a task ran before what it needs had landed (a restore's
    writing task before its record says running), which happens now and
    then: it is tried again, logged as information, not as a failure with
    its traceback (a warning every user of ``serve`` would wonder about)."""
    caplog.set_level(logging.INFO, logger='lovely_gae.async_')
    task = async_.defer(needs, args=('the record',))
    if pushed:
        assert async_.run_task(task.name)
    else:
        assert run_tasks(clock=task_clock) == 1
    [again] = async_.get_tasks()
    assert again.attempts == 1 and 'NotYet: what the record' in again.error
    [logged] = [r for r in caplog.records if 'NotYet' in r.getMessage()]
    assert logged.levelname == 'INFO' and not logged.exc_info
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    task_clock.advance(3600)
    assert run_tasks(clock=task_clock) == 1
    assert async_.get_tasks() == [] and async_.get_failed_tasks() == []
