import pytest
from google.appengine.api import namespace_manager
from google.appengine.ext import db

from lovely_gae import async_
from lovely_gae.exceptions import (InvalidInput, SnapshotNotFinished,
                                   SnapshotNotFound)
from lovely_gae.snapshot import api
from lovely_gae.snapshot.models import RangeBackup, Snapshot
from tests.conftest import Dummy, Yummy


def snapshot_count():
    return Snapshot.all().count()


@pytest.mark.parametrize('kwargs, field', [
    ({'batchsize': 0}, 'batchsize'),
    ({'batchsize': -5}, 'batchsize'),
    ({'batchsize': 'ten'}, 'batchsize'),
    ({'batchsize': 2.5}, 'batchsize'),
    ({'kinds': ['']}, 'kind'),
    ({'kinds': ['__kind__']}, 'kind'),
    ({'kinds': ['Dummy', '__Stat_Total__']}, 'kind'),
    ({'kinds': 'Dummy'}, 'kinds'),
    ({'namespace': 'no spaces allowed'}, 'namespace'),
    ({'codec': 'rar'}, None),
])
def test_bad_input_is_refused_and_creates_no_snapshot(gae_testbed, kwargs,
                                                      field):
    with pytest.raises(ValueError) as info:
        api.create_snapshot(**kwargs)
    if field:
        assert isinstance(info.value, InvalidInput)
        assert info.value.name == field
    assert '\n' not in str(info.value)
    assert snapshot_count() == 0
    assert async_.get_tasks() == []


def test_get_kinds_lists_application_kinds_only(make_entities, run_tasks,
                                                finished_snapshot):
    make_entities(Yummy, 2)
    make_entities(Dummy, 1)
    finished_snapshot()
    async_.defer(print, countdown=60)
    assert api.get_kinds() == ['Dummy', 'Yummy']
    namespace_manager.set_namespace('lovely_gae')
    try:
        assert api.get_kinds() == []
    finally:
        namespace_manager.set_namespace('')


def test_snapshot_of_a_kind_without_entities_finishes(finished_snapshot):
    snap = finished_snapshot(['Nothing'])
    assert snap.markers == {'Nothing': []}
    assert snap.progress()['ranges_done'] == 1


def test_snapshot_of_no_kinds_at_all_is_finished_at_once(gae_testbed):
    snap = api.create_snapshot()
    assert snap.kinds == [] and snap.status == Snapshot.STATUS_FINISHED


def test_restore_deletes_entities_added_after_the_snapshot(
        make_entities, finished_snapshot, run_tasks):
    keys = make_entities(Dummy, 30)
    snap = finished_snapshot(['Dummy'], batchsize=7)
    added = make_entities(Dummy, 12)
    db.delete(keys[:3])
    changed = db.get(keys[10])
    changed.title = 'changed'
    changed.put()
    snap.restore()
    run_tasks(recursive=True)
    assert sorted(Dummy.all(keys_only=True)) == sorted(keys)
    assert db.get(keys[10]).title == '10'
    assert db.get(added) == [None] * len(added)
    snap = api.get_snapshot(snap.id)
    assert snap.restore_progress()['status'] == 'finished'


def test_restore_leaves_other_kinds_alone(make_entities, finished_snapshot,
                                          run_tasks):
    make_entities(Dummy, 3)
    snap = finished_snapshot(['Dummy'])
    make_entities(Yummy, 4)
    make_entities(Dummy, 4)
    snap.restore()
    run_tasks(recursive=True)
    assert Dummy.all().count() == 3
    assert Yummy.all().count() == 4


def test_restoring_an_unfinished_snapshot_is_refused(make_entities):
    make_entities(Dummy, 3)
    snap = api.create_snapshot(['Dummy'])
    with pytest.raises(SnapshotNotFinished) as info:
        snap.restore()
    assert 'not finished' in str(info.value)
    assert len(async_.get_tasks()) == 1  # only the snapshot's own task


def test_restore_of_unknown_snapshot_is_refused(gae_testbed):
    with pytest.raises(SnapshotNotFound):
        api.restore_snapshot(12345)
    with pytest.raises(SnapshotNotFound):
        api.get_snapshot('abc')


def test_delete_removes_the_range_backups(make_entities, finished_snapshot):
    make_entities(Dummy, 50)
    keep = finished_snapshot(['Dummy'], batchsize=10)
    snap = finished_snapshot(['Dummy'], batchsize=10)
    assert snap.rangebackup_set.count() == 5
    snap.delete()
    assert db.get(snap.key()) is None
    assert snap.rangebackup_set.count() == 0
    assert keep.rangebackup_set.count() == 5


def test_rangebackup_set_works_from_any_namespace(make_entities,
                                                  finished_snapshot):
    make_entities(Dummy, 3)
    snap = finished_snapshot(['Dummy'])
    namespace_manager.set_namespace('tenant')
    try:
        assert snap.rangebackup_set.count() == 1
    finally:
        namespace_manager.set_namespace('')


def test_range_backup_records_what_it_holds(make_entities, finished_snapshot):
    keys = make_entities(Dummy, 15)
    snap = finished_snapshot(['Dummy'], batchsize=10)
    first, second = snap.range_backups()
    assert (first.range_kind, first.position, first.count) == ('Dummy', 0, 10)
    assert first.start is None and first.end == sorted(keys)[10]
    assert second.start == sorted(keys)[10] and second.end is None
    assert first.keys() + second.keys() == sorted(keys)
    assert first.codec == 'bz2' and first.format == 'entityproto-delimited/1'
    assert first.key().name() == 'RB:%d:Dummy:0000000000:%d' % (snap.id,
                                                                 first.size)
    assert isinstance(first, RangeBackup)
