"""The pytest plugin, as a user's own tests see it."""

USER_TESTS = '''
import pytest
import requests
from google.appengine.api import memcache
from google.appengine.api.datastore_errors import NeedIndexError
from google.appengine.ext import db

from lovely_gae.async_ import defer, get_tasks
from lovely_gae.testing import rerun


class Note(db.Model):
    text = db.StringProperty()
    rank = db.IntegerProperty()


def test_a_testbed_with_datastore_and_memcache(gae_testbed):
    Note(text='x').put()
    memcache.set('k', 'v')
    assert Note.all().count() == 1 and memcache.get('k') == 'v'


def test_each_test_starts_empty(gae_testbed):
    assert Note.all().count() == 0 and memcache.get('k') is None


def test_run_tasks_runs_what_was_deferred(run_tasks, capsys):
    defer(print, args=('from a task',))
    assert run_tasks() == 1
    assert capsys.readouterr().out == 'from a task\\n'


def test_a_clock_the_test_advances_past_a_countdown(run_tasks, task_clock,
                                                    capsys):
    defer(print, args=('later',), countdown=600)
    assert run_tasks(clock=task_clock) == 0
    task_clock.advance(600)
    assert run_tasks(clock=task_clock) == 1
    assert capsys.readouterr().out == 'later\\n'


def test_rerun_runs_a_task_once_more_as_its_retry_would(run_tasks, capsys):
    defer(print, args=('again',))
    [task] = get_tasks()
    assert run_tasks() == 1
    rerun(task)
    assert capsys.readouterr().out == 'again\\nagain\\n'
    assert get_tasks() == []


def test_a_query_needs_the_composite_index_production_needs(gae_testbed):
    Note(text='x', rank=1).put()
    # Declared in the project's index.yaml: served.
    query = Note.all().filter('text =', 'x').order('-rank')
    assert query.count() == 1
    # Not declared: refused, as production refuses it.
    with pytest.raises(NeedIndexError):
        Note.all().order('-__key__').fetch(1)


def test_a_snapshot_server_on_loopback(snapshot_server):
    Note(text='x').put()
    url = snapshot_server.url + '/lovely.gae/snapshots'
    assert snapshot_server.url.startswith('http://127.0.0.1:')
    assert requests.post(url).status_code == 401
    auth = {'Authorization': 'Bearer ' + snapshot_server.token}
    assert requests.post(url, headers=auth).json()['kinds'] == ['Note']
'''


INDEX_YAML = '''indexes:
- kind: Note
  properties:
  - name: text
  - name: rank
    direction: desc
'''


def test_users_get_a_testbed_tasks_and_a_server(pytester):
    pytester.makepyfile(test_user_app=USER_TESTS)
    pytester.path.joinpath('index.yaml').write_text(INDEX_YAML)
    # The plugin comes by its entry point once installed; load it by name
    # here, so that this runs in a checkout too.
    result = pytester.runpytest('-p', 'no:lovely_gae',
                                '-p', 'lovely_gae.testing')
    result.assert_outcomes(passed=7)


def test_the_installed_package_registers_the_plugin_for_pytest():
    from importlib.metadata import entry_points
    [plugin] = [point for point in entry_points(group='pytest11')
                if point.name == 'lovely_gae']
    assert plugin.value == 'lovely_gae.testing'
    assert plugin.load().__name__ == 'lovely_gae.testing'
