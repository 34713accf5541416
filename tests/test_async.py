import datetime

import pytest
from google.appengine.ext import db

from lovely_gae import async_
from lovely_gae.exceptions import TaskError
from lovely_gae.serializers import JSONSerializer

CALLS = []


def record(*args, **kwargs):
    CALLS.append((args, kwargs))


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


def test_countdown_delays_a_task(gae_testbed, run_tasks):
    async_.defer(record, countdown=3600)
    assert run_tasks(recursive=True) == 0
    assert len(async_.get_tasks()) == 1


def test_defer_in_a_transaction_rolls_back_with_it(gae_testbed, run_tasks):
    def work():
        async_.defer(record, args=('never',))
        raise db.Rollback()
    db.run_in_transaction_options(db.create_transaction_options(xg=True),
                                  work)
    assert async_.get_tasks() == []


def test_functions_without_an_importable_name_are_refused(gae_testbed):
    def local():
        pass
    with pytest.raises(TaskError):
        async_.defer(local)
    with pytest.raises(TaskError):
        async_.defer('no_colon_here')


def test_unknown_function_fails_the_task_with_a_clear_error(
        gae_testbed, run_tasks):
    async_.defer('lovely_gae.nowhere:func', max_attempts=1)
    assert run_tasks() == 1
    [failed] = async_.get_failed_tasks()
    assert "cannot find task function 'lovely_gae.nowhere:func'" in \
        failed.error


def test_arguments_that_are_not_json_are_refused(gae_testbed):
    with pytest.raises(TypeError):
        async_.defer(record, args=(object(),))


def test_serializer_round_trip():
    value = {'k': [1, 'a', None, True, 2.5, b'b',
                   datetime.datetime(2000, 1, 1)]}
    assert JSONSerializer.loads(JSONSerializer.dumps(value)) == value


def test_arguments_too_big_for_a_lease_are_refused(gae_testbed):
    with pytest.raises(TaskError, match='at most 1000000 fit'):
        async_.defer(record, args=('x' * 1000000,))
    assert async_.get_tasks() == []
