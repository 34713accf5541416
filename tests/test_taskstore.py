"""Tasks as stored: what db.Model reads back, older tasks, the one index."""
from google.appengine.api import datastore, datastore_types
from google.appengine.ext import db

from lovely_gae import async_, defaults, entities, leases
from lovely_gae.base import utcnow

CALLS = []


@async_.task
def record(*args):
    CALLS.append(args)


def put_old_task(name, **values):
    """Store a task as the library did before it slimmed the stored form:
    every property, unset ones as null, ``status`` indexed."""
    entity = datastore.Entity(
        'LovelyGaeTask', name=name, namespace=defaults.NAMESPACE,
        unindexed_properties=['func', 'payload', 'on_failure', 'attempts',
                              'max_attempts', 'retry_delay', 'lease',
                              'error', 'created'])
    entity.update({'func': None, 'payload': None, 'on_failure': None,
                   'status': 'queued', 'due': None, 'attempts': 0,
                   'max_attempts': 8, 'retry_delay': 0.5, 'lease': None,
                   'error': None, 'created': utcnow()})
    for key, value in values.items():
        entity[key] = (datastore_types.Text(value)
                       if key in ('payload', 'error') else value)
    datastore.Put(entity)


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


def test_tasks_stored_by_the_old_model_still_run_and_fail(gae_testbed,
                                                          run_tasks):
    CALLS.clear()
    now = utcnow()
    put_old_task('queued', func='tests.test_taskstore:record',
                 payload='{"args":[7],"kwargs":{}}', due=now)
    put_old_task('failed', func='builtins:int', status='failed',
                 attempts=8, error='ValueError: no')
    old = stored(db.Key.from_path('LovelyGaeTask', 'queued',
                                  namespace=defaults.NAMESPACE))
    assert sorted(p.name for p in old.property) == ['due', 'status']
    assert len(old.raw_property) == 9
    assert [t.key().name() for t in async_.get_tasks()] == ['queued']
    assert async_.count_tasks() == 1
    [failed] = async_.get_failed_tasks()
    assert (failed.key().name(), failed.error) == ('failed', 'ValueError: no')
    assert run_tasks() == 1
    assert CALLS == [(7,)]
    assert async_.get_tasks() == []
    assert [t.key().name() for t in async_.get_failed_tasks()] == ['failed']


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
