"""Push tasks: each stored task is handed to a worker, on the SDK's stub."""
import datetime
import urllib.parse

import pytest

from lovely_gae import async_, base, defaults, push
from lovely_gae.exceptions import TaskError

CALLS = []


@async_.task
def record(*args):
    CALLS.append(args)


@async_.task
def fail_once(marker):
    if marker not in CALLS:
        CALLS.append(marker)
        raise RuntimeError('first try fails')
    CALLS.append('again')


QUEUE_YAML = """queue:
- name: lovely-gae
  rate: 50/s
  max_concurrent_requests: 16
"""


@pytest.fixture
def taskqueue(gae_testbed, monkeypatch, tmp_path):
    """The SDK's task queue stub with the library's push queue, push on."""
    (tmp_path / 'queue.yaml').write_text(QUEUE_YAML)
    gae_testbed.init_taskqueue_stub(root_path=str(tmp_path))
    stub = gae_testbed.get_stub('taskqueue')
    monkeypatch.setattr(defaults, 'PUSH', True)
    CALLS.clear()
    return stub


def pushed(stub):
    """``[(push name, [task names])]`` the queue holds."""
    found = []
    for task in stub.get_filtered_tasks(queue_names=[defaults.PUSH_QUEUE]):
        params = urllib.parse.parse_qs(task.payload.decode())
        found.append((task.name, params[push.PARAM]))
    return sorted(found)


def test_each_stored_task_is_pushed_by_a_name_of_its_own(taskqueue):
    first = async_.defer(record, args=(1,))
    second = async_.defer(record, args=(2,))
    found = pushed(taskqueue)
    assert sorted(names[0] for _, names in found) == sorted(
        [first.key().name(), second.key().name()])
    assert sorted(name for name, _ in found) == sorted(
        push.push_name(task.key().name(), task.due)
        for task in (first, second))
    assert all(task.url == '/lovely.gae/worker' for task in
               taskqueue.get_filtered_tasks(queue_names=['lovely-gae']))
    # Announcing the same stored task again adds no second push.
    push.current().announce([first.key().name()], first.due)
    assert len(pushed(taskqueue)) == 2


def test_pushes_of_work_deferred_twice_run_it_once(taskqueue):
    async_.defer(record, args=(1,))
    async_.defer(record, args=(1,))  # the same work while it waits
    found = pushed(taskqueue)
    assert [names for _, names in found][0] == [names for _, names in
                                                found][-1]
    ran = [async_.run_task(names[0]) for _, names in found]
    assert ran.count(True) == 1 and CALLS == [(1,)]


def test_a_transaction_pushes_once_with_its_commit(taskqueue):
    def work():
        for number in range(20):
            async_.defer(record, args=(number,))
    base.transaction(work)
    [(name, names)] = pushed(taskqueue)
    assert len(names) == 20  # one unnamed push: App Engine takes 5 at most

    def rolled_back():
        async_.defer(record, args=('never',))
        raise RuntimeError('roll back')
    with pytest.raises(RuntimeError):
        base.transaction(rolled_back)
    assert len(pushed(taskqueue)) == 1
    assert len(async_.get_tasks()) == 20


def test_run_task_runs_a_task_by_key_once(taskqueue):
    task = async_.defer(record, args=('by key',))
    assert async_.run_task(task.key().name()) is True
    assert CALLS == [('by key',)]
    assert async_.run_task(task.key().name()) is False  # done: deleted
    assert async_.get_tasks() == []
    assert async_.run_task('no-such-task') is False


def test_a_task_not_due_yet_waits_for_its_push(taskqueue):
    task = async_.defer(record, args=('later',), countdown=3600)
    assert async_.run_task(task.key().name()) is False
    assert CALLS == []
    assert len(async_.get_tasks()) == 1


def test_a_failed_run_is_stored_again_and_pushed_again(taskqueue,
                                                       fast_retries):
    task = async_.defer(fail_once, args=('x',))
    before = len(pushed(taskqueue))
    assert async_.run_task(task.key().name()) is True
    [stored] = async_.get_tasks()
    assert (stored.attempts, stored.error) == (
        1, 'RuntimeError: first try fails')
    assert len(pushed(taskqueue)) == before + 1  # its retry has a push
    assert async_.run_task(task.key().name()) is True
    assert CALLS == ['x', 'again']
    assert async_.get_tasks() == []


@async_.task
def defer_myself(word):
    CALLS.append(word)
    async_.defer(defer_myself, args=(word,))


def test_a_task_that_defers_itself_again_is_not_deleted_by_its_run(
        taskqueue):
    task = async_.defer(defer_myself, args=('again',))
    assert async_.run_task(task.key().name()) is True
    assert CALLS == ['again']
    assert [t.key().name() for t in async_.get_tasks()] == [
        task.key().name()]


def test_no_push_off_app_engine(gae_testbed):
    assert defaults.PUSH is None and push.current() is None
    async_.defer(record, args=(1,))  # no task queue stub needed


def test_unregistered_names_cannot_be_run_by_key(taskqueue, monkeypatch):
    import os
    ran = []
    monkeypatch.setattr(os, 'system', lambda *a: ran.append(a))
    forged = async_.Task('forged', func='os:system',
                         payload='{"args": ["true"]}',
                         due=datetime.datetime(2000, 1, 1), max_attempts=1,
                         retry_delay=0.0)
    async_.defer_many([forged])
    assert async_.run_task('forged') is True
    assert ran == []
    [failed] = async_.get_failed_tasks()
    assert 'is not registered' in failed.error
    with pytest.raises(TaskError):
        async_.defer('os:system')


def test_the_worker_endpoint_runs_what_a_push_names(taskqueue):
    from webtest import TestApp
    from lovely_gae.snapshot import getApp
    app = TestApp(getApp(token='s3cret'))
    auth = {'Authorization': 'Bearer s3cret'}

    def transactional():
        for number in range(3):
            async_.defer(record, args=(number,))
    base.transaction(transactional)
    [(_, names)] = pushed(taskqueue)
    assert app.post('/lovely.gae/worker', {'task': names},
                    headers=auth).json == {'ran': 0}
    singles = [found for found in pushed(taskqueue) if len(found[1]) == 1]
    assert sorted(n for _, [n] in singles) == sorted(names)
    for _, [name] in singles:
        assert app.post('/lovely.gae/worker', {'task': name},
                        headers=auth).json == {'ran': 1}
    assert sorted(CALLS) == [(0,), (1,), (2,)]
    assert app.post('/lovely.gae/worker', {'task': names[0]},
                    headers=auth).json == {'ran': 0}  # a push twice


def test_the_sweeper_leaves_fresh_tasks_to_their_pushes(taskqueue,
                                                        monkeypatch):
    async_.defer(record, args=('fresh',))
    assert async_.run_tasks() == 0
    monkeypatch.setattr(defaults, 'SWEEP_GRACE', 0.0)  # its push was lost
    assert async_.run_tasks() == 1
    assert CALLS == [('fresh',)]


def test_pushes_carry_the_token_so_token_only_mode_runs_them(taskqueue,
                                                              monkeypatch):
    from webtest import TestApp
    from lovely_gae.snapshot import getApp
    monkeypatch.setenv('LOVELY_GAE_TOKEN', 's3cret')
    monkeypatch.setenv('LOVELY_GAE_TOKEN_ONLY', '1')
    monkeypatch.setenv('GAE_ENV', 'standard')
    task = async_.defer(record, args=('pushed',))
    [pushed_task] = taskqueue.get_filtered_tasks(queue_names=['lovely-gae'])
    headers = dict(pushed_task.headers)
    assert headers['Authorization'] == 'Bearer s3cret'
    app = TestApp(getApp())
    # The queue's own header opens nothing in token-only mode:
    app.post('/lovely.gae/worker', {'task': task.key().name()},
             headers={'X-AppEngine-QueueName': 'lovely-gae'}, status=401)
    res = app.post('/lovely.gae/worker', {'task': task.key().name()},
                   headers={'X-AppEngine-QueueName': 'lovely-gae',
                            'Authorization': headers['Authorization']})
    assert res.json == {'ran': 1} and CALLS == [('pushed',)]
