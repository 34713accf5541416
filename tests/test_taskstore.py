"""Tasks as stored: what db.Model reads back, the one index."""
from google.appengine.api import datastore
from google.appengine.ext import db

from lovely_gae import async_, defaults, entities, leases

CALLS = []


@async_.task
def record(*args):
    CALLS.append(args)


def stored(key):
    [proto] = entities.get([entities.ref(key)])
    return proto


def fields(task):
    return {name: getattr(task, name) for name in async_.Task.properties()}


def test_a_deferred_task_reads_back_as_it_was_made(gae_testbed):
    CALLS.clear()
    task = async_.defer(record, args=(1, 'a'), countdown=60, max_attempts=3,
                        retry_delay=2, on_failure=record,
                        on_failure_args=('x',))
    assert fields(db.get(task.key())) == fields(task)
    assert fields(task)['status'] == 'queued'
    assert fields(task)['attempts'] == 0


def test_due_is_the_one_indexed_property_and_unset_ones_are_left_out(
        gae_testbed):
    task = async_.defer(record, args=(1,))
    proto = stored(task.key())
    assert [p.name for p in proto.property] == ['due']
    assert sorted(p.name for p in proto.raw_property) == [
        'created', 'func', 'max_attempts', 'payload', 'retry_delay']


def test_a_task_deferred_in_a_transaction_commits_with_it(gae_testbed,
                                                          run_tasks):
    CALLS.clear()

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
    left = async_.Task.all().fetch(100)
    assert [(t.func, t.status) for t in left] == [('builtins:int', 'failed')]
    assert datastore.Query(leases.KIND, namespace=defaults.NAMESPACE).Count() \
        == 0
