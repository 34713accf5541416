import pytest
from google.appengine.ext import db

from lovely_gae import async_, batch, entities
from tests.conftest import Dummy

SEEN = []


@async_.task
def collect(tag, markers):
    SEEN.append((tag, markers))


@pytest.mark.parametrize('count, expected', [
    (0, 0), (1, 0), (199, 0), (200, 0), (201, 1), (400, 1), (401, 2)])
def test_one_marker_per_full_batch(make_entities, count, expected):
    make_entities(Dummy, count)
    assert len(batch.compute_markers('Dummy', 200)) == expected


def test_markers_are_every_batchsize_th_key(make_entities):
    keys = sorted(make_entities(Dummy, 25))
    assert batch.compute_markers('Dummy', 10) == [keys[10], keys[20]]


def test_ranges_cover_the_whole_key_space_without_overlap(make_entities):
    keys = make_entities(Dummy, 95)
    markers = batch.compute_markers('Dummy', 20)
    seen = []
    for start, end in batch.ranges(markers):
        seen.extend(entities.key(r) for r in
                    entities.iter_range_keys('Dummy', '', start, end))
    assert sorted(seen) == sorted(keys)


def test_create_markers_runs_the_callback_as_its_own_task(
        make_entities, run_tasks):
    SEEN.clear()
    make_entities(Dummy, 5)
    batch.create_markers('Dummy', 2, collect, ('t',))
    assert run_tasks() == 1
    assert SEEN == []
    assert run_tasks() == 1
    [(tag, markers)] = SEEN
    assert tag == 't' and len(markers) == 2
    assert all(isinstance(m, db.Key) for m in markers)


def test_markers_of_other_namespaces_are_separate(make_entities):
    make_entities(Dummy, 30)
    other = [Dummy(title='x', _app=(None, 'other')) for _ in range(5)]
    db.put(other)
    assert len(batch.compute_markers('Dummy', 10)) == 2
    assert batch.compute_markers('Dummy', 10, 'other') == []


@pytest.mark.parametrize('count', [0, 20, 25, 39])
def test_one_pass_hands_out_each_range_whole_then_by_keys(make_entities,
                                                          ticking_clock,
                                                          count):
    keys = sorted(make_entities(Dummy, count))
    seen = []
    for position, start, full, items in batch.iter_ranges('Dummy', 10,
                                                          full_seconds=1.5):
        got = [entities.key(item.key if full else item) for item in items]
        seen.append((position, start, full, got))
    # Starts of the ranges are the markers; time is up after two ranges.
    assert [start for _, start, _, _ in seen[1:]] == \
        batch.compute_markers('Dummy', 10)
    assert [full for _, _, full, _ in seen] == [True, True, False, False][
        :len(seen)]
    assert [key for *_, got in seen for key in got] == keys
    assert all(got[0] == start for _, start, _, got in seen[1:])


def test_ranges_left_unread_are_skipped(make_entities):
    keys = sorted(make_entities(Dummy, 25))
    starts = [start for _, start, _, items in batch.iter_ranges(
        'Dummy', 10, full_seconds=60) if next(items, True)]
    assert starts == [None, keys[10], keys[20]]


def test_many_markers_reach_the_callback_through_the_datastore(
        make_entities, run_tasks, monkeypatch):
    # A task's arguments are an entity's worth; thousands of markers are not.
    monkeypatch.setattr(batch, '_INLINE_MARKERS', 3)
    monkeypatch.setattr(batch.MarkerList, 'CHUNK', 2)
    SEEN.clear()
    make_entities(Dummy, 25)
    batch.create_markers('Dummy', 4, collect, ('t',))
    assert run_tasks() == 1
    assert batch.MarkerList.all().count() == 3  # 6 markers, 2 an entity
    assert run_tasks() == 1
    assert SEEN == [('t', batch.compute_markers('Dummy', 4))]
    assert batch.MarkerList.all().count() == 0
    assert run_tasks() == 0


def test_a_pass_goes_on_in_further_tasks_with_the_same_markers(
        make_entities, run_tasks, monkeypatch, ticking_clock):
    SEEN.clear()
    make_entities(Dummy, 25)
    expected = batch.compute_markers('Dummy', 4)
    monkeypatch.setattr(batch.defaults, 'PASS_SECONDS', 2.5)  # 2 ranges
    batch.create_markers('Dummy', 4, collect, ('t',))
    assert run_tasks() == 1
    assert SEEN == [] and batch.MarkerList.all().count() == 1
    assert run_tasks(recursive=True) == 3 + 1  # 7 ranges in 4 tasks
    assert SEEN == [('t', expected)]
    assert batch.MarkerList.all().count() == 0


def test_run_tokens_name_the_task_that_read_each_range():
    token = [['a', 0], ['b', 3], ['c', 7]]
    assert [batch.run_token(token, p) for p in (0, 2, 3, 6, 7, 9)] == \
        ['a', 'a', 'b', 'b', 'c', 'c']
    assert batch.run_token('x', 5) == 'x' and batch.pass_name(token) == 'c'
    assert batch.run_tokens(token) == ['a', 'b', 'c']
