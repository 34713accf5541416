"""Leases: a batch of tasks held by one worker, given back when it dies."""
import datetime

import pytest
from google.appengine.api import datastore
from google.appengine.ext import db

from lovely_gae import async_, defaults, entities, leases
from lovely_gae.base import transaction, utcnow

CALLS = []


@async_.task
def record(*args):
    CALLS.append(args)


@async_.task
def defer_record(*args):
    async_.defer(record, args=args)


@pytest.fixture(autouse=True)
def clear_calls():
    CALLS.clear()


def lease_entities():
    return list(datastore.Query(leases.KIND,
                                namespace=defaults.NAMESPACE).Run())


def lease_all(token, seconds=60):
    keys = [task.key() for task in async_.get_tasks()]
    leased, rest = leases.lease([entities.ref(key) for key in keys], token,
                                seconds)
    assert rest == []
    return leased


def test_a_lease_takes_its_tasks_out_of_the_queue(gae_testbed, run_tasks):
    task = async_.defer(record, args=(1,))
    before = utcnow()
    [leased] = lease_all('first', 30)
    assert (leased.func, leased.attempts, leased.lease) == (
        'tests.test_leases:record', 1, 'first')
    assert db.get(task.key()) is None
    assert lease_all('second') == []
    assert run_tasks(recursive=True) == 0
    # Shown as running: as leased, due when the lease ends.
    [shown] = async_.get_tasks()
    assert (shown.key(), shown.lease, shown.attempts) == (
        task.key(), 'first', 1)
    assert before + datetime.timedelta(seconds=29) < shown.due
    assert async_.count_tasks() == 1
    [holder] = lease_entities()
    assert holder.key().name() == 'first'
    assert holder['due'] == shown.due


def test_of_two_racing_leases_only_one_gets_the_task(gae_testbed,
                                                     monkeypatch):
    task = async_.defer(record)
    refs = [entities.ref(task.key())]
    lease_one = leases._lease_one
    rival = []

    def with_a_rival(pb, token, *args):
        # Another worker commits its lease while ours is between read and
        # commit: our commit collides, and the retry finds nothing due.
        if token == 'ours' and rival == []:
            rival.append(leases.lease(refs, 'rival', 60)[0])
        return lease_one(pb, token, *args)
    monkeypatch.setattr(leases, '_lease_one', with_a_rival)
    assert leases.lease(refs, 'ours', 60) == ([], [])
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
    lease_all('dead-worker', 0.01)
    assert leases.recover(utcnow() - datetime.timedelta(seconds=5)) == 0
    assert leases.recover(utcnow() + datetime.timedelta(seconds=1)) == 1
    back = db.get(task.key())
    assert (back.attempts, back.lease) == (1, 'dead-worker')
    assert lease_entities() == []


def test_recovery_keeps_what_the_queue_holds_again(gae_testbed):
    task = async_.defer(record, args=('old',))
    lease_all('dead-worker', 0.01)
    again = async_.defer(record, args=('old',), max_attempts=2)
    assert again.key() == task.key()
    assert leases.recover(utcnow() + datetime.timedelta(seconds=1)) == 1
    back = db.get(task.key())
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


def test_a_lease_that_was_taken_over_writes_no_retry(gae_testbed):
    async_.defer('builtins:int', args=('x',))
    [leased] = lease_all('slow-worker', 0.01)
    assert leases.recover(utcnow() + datetime.timedelta(seconds=1)) == 1
    async_._run_one(leased)  # fails, after the lease was taken over
    [after] = async_.get_tasks()
    assert (after.error, after.attempts) == (None, 1)
    assert not transaction(leases.holds, 'slow-worker')


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
    monkeypatch.setattr(leases, '_HOLD_BYTES', 1)  # one task per lease
    refs = [entities.ref(t.key()) for t in async_.get_tasks()]
    leased, rest = leases.lease(refs, 'small', 60)
    assert len(leased) == 1 and rest == refs[1:]
    assert run_tasks() == 4
    assert lease_entities() == [lease_entities()[0]]  # 'small' still holds
    assert len(CALLS) == 4
