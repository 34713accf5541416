import subprocess
import sys

import pytest
from google.appengine.api import datastore, namespace_manager
from google.appengine.ext import db

from lovely_gae import async_, entities
from lovely_gae.exceptions import (
    EmptyKind, InvalidInput, SnapshotNotFinished, SnapshotNotFound)
from lovely_gae.snapshot import api
from lovely_gae.snapshot.models import RangeBackup, Snapshot
from tests.conftest import Dummy, Yummy, all_bytes, answer_lost


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
    ({'codec': 'rar'}, 'codec'),
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
    finished_snapshot().restore()  # its progress is the library's too
    run_tasks(recursive=True)
    async_.defer(print, countdown=60)
    assert api.get_kinds() == ['Dummy', 'Yummy']


def test_the_librarys_namespace_is_never_snapshotted(gae_testbed):
    """Its tasks name code: a restore must never put them back."""
    for call in (lambda: api.create_snapshot(namespace='lovely_gae'),
                 lambda: api.create_snapshot(['Dummy'],
                                             namespace='lovely_gae'),
                 lambda: api.get_kinds('lovely_gae')):
        with pytest.raises(InvalidInput, match="library's own"):
            call()
    namespace_manager.set_namespace('lovely_gae')
    try:
        with pytest.raises(InvalidInput, match="library's own"):
            api.create_snapshot()
    finally:
        namespace_manager.set_namespace('')
    assert api.list_snapshots() == []


def test_user_kinds_named_like_the_librarys_are_snapshotted(
        finished_snapshot):
    """The library's kinds live in its own namespace only."""
    for name in ('Snapshot', 'RangeBackup', 'LovelyGaeTask'):
        datastore.Put(datastore.Entity(name, name='mine'))
    snap = finished_snapshot()
    assert sorted(snap.kinds) == ['LovelyGaeTask', 'RangeBackup', 'Snapshot']
    assert snap.entity_count == 3


def test_empty_kinds_are_refused_only_when_asked(gae_testbed, make_entities):
    make_entities(Dummy, 1)
    with pytest.raises(EmptyKind) as raised:
        api.create_snapshot(['Dummy', 'Dumy'], allow_empty=False)
    assert str(raised.value) == (
        "kind 'Dumy' has no entities in namespace '' of app "
        "lovely-gae-testing")
    with pytest.raises(EmptyKind, match="namespace 'other'"):
        api.create_snapshot(['Dummy'], namespace='other', allow_empty=False)
    with pytest.raises(InvalidInput, match="namespace 'other'.*no entities"):
        api.create_snapshot(namespace='other', allow_empty=False)
    assert api.list_snapshots() == []


def test_a_namespace_without_the_entities_says_which_have_them(
        gae_testbed, make_entities):
    """Data in another namespace (the demo's, say) is named: the kind
    was right, the namespace was not. The library's own is never named."""
    make_entities(Dummy, 1, _app=(None, 'demo'))
    async_.defer(print, countdown=60)  # in the library's namespace
    with pytest.raises(EmptyKind) as raised:
        api.create_snapshot(['Dummy'], allow_empty=False)
    assert raised.value.elsewhere == ['demo']
    assert str(raised.value) == (
        "kind 'Dummy' has no entities in namespace '' of app "
        "lovely-gae-testing (it has some in namespace 'demo')")
    with pytest.raises(InvalidInput) as raised:
        api.create_snapshot(allow_empty=False)
    assert str(raised.value) == (
        "invalid namespace '': has no entities of any kind (namespace "
        "'demo' has some)")
    make_entities(Yummy, 1, _app=(None, 'more'))
    with pytest.raises(InvalidInput, match=r"\(namespaces 'demo', 'more' "
                       r"have some\)"):
        api.create_snapshot(allow_empty=False)
    with pytest.raises(EmptyKind) as raised:  # a typo: nowhere
        api.create_snapshot(['Dumy'], allow_empty=False)
    assert raised.value.elsewhere == []
    assert api.create_snapshot(['Dumy']).kinds == ['Dumy']  # the seed's way


def test_snapshot_of_a_kind_without_entities_finishes(finished_snapshot):
    snap = finished_snapshot(['Nothing'])
    assert snap.markers == {'Nothing': []}
    assert snap.progress()['ranges_done'] == 1


def test_snapshot_of_no_kinds_at_all_is_finished_at_once(gae_testbed):
    snap = api.create_snapshot()
    assert snap.kinds == [] and snap.status == Snapshot.STATUS_FINISHED


@pytest.mark.parametrize('sampled', [False, True])
def test_a_creation_that_landed_though_it_timed_out_makes_one_snapshot(
        make_entities, run_tasks, monkeypatch, sharded, sampled):
    make_entities(Dummy, 100 if sampled else 5)  # cut at once, or by a task
    lost = answer_lost(monkeypatch, api, '_start',
                       meanwhile=lambda: run_tasks(recursive=True))
    snap = api.create_snapshot(['Dummy'], batchsize=10)
    assert lost  # applied, its tasks ran, then tried again
    assert [found.id for found in api.list_snapshots()] == [snap.id]
    assert snap.status == Snapshot.STATUS_FINISHED  # as its tasks left it
    run_tasks(recursive=True)
    assert api.get_snapshot(snap.id).status == Snapshot.STATUS_FINISHED
    before = all_bytes(['Dummy'])
    Dummy(key_name='added').put()
    api.get_snapshot(snap.id).restore()
    run_tasks(recursive=True)
    assert all_bytes(['Dummy']) == before


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


def test_an_unknown_snapshot_is_not_found(gae_testbed):
    with pytest.raises(SnapshotNotFound):
        api.get_snapshot(12345)
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
    assert [entities.key(entities.EntityProto.FromString(record).key)
            for backup in (first, second)
            for record in backup.iter_records()] == sorted(keys)
    assert first.codec == 'bz2' and first.format == 'entityproto-delimited/1'
    assert first.key().name() == 'RB:%d:Dummy:0000000000:%d' % (snap.id,
                                                                 first.size)
    assert isinstance(first, RangeBackup)


def _in_namespace(namespace, model, count):
    db.put([model(title=str(i), _app=(None, namespace))
            for i in range(count)])


def test_namespaces_are_snapshotted_and_restored_apart(
        make_entities, run_tasks):
    make_entities(Dummy, 5)
    _in_namespace('tenant', Dummy, 8)
    namespace_manager.set_namespace('tenant')
    try:
        snap = api.create_snapshot()  # the current namespace
    finally:
        namespace_manager.set_namespace('')
    run_tasks(recursive=True)
    snap = api.get_snapshot(snap.id)
    assert (snap.namespace, snap.kinds) == ('tenant', ['Dummy'])
    assert snap.progress()['entities'] == 8
    assert snap.key().namespace() == 'lovely_gae'
    db.delete(list(Dummy.all(keys_only=True, namespace='tenant'))[:3])
    make_entities(Dummy, 2)  # default namespace: must stay as it is
    snap.restore()
    run_tasks(recursive=True)
    assert Dummy.all(namespace='tenant').count() == 8
    assert Dummy.all().count() == 7
    explicit = api.create_snapshot(namespace='tenant')
    assert explicit.namespace == 'tenant'


def test_dry_run_counts_and_writes_nothing(make_entities, finished_snapshot,
                                           run_tasks):
    keys = make_entities(Dummy, 20)
    snap = finished_snapshot(['Dummy'], batchsize=6)
    db.delete(keys[:4])
    changed = db.get(keys[5:7])
    for entity in changed:
        entity.title = 'changed'
    db.put(changed)
    make_entities(Dummy, 3)
    make_entities(Yummy, 1)
    state = sorted(str(e.key()) + e.title for e in Dummy.all())
    assert snap.restore(dry_run=True) is None
    assert api.get_snapshot(snap.id).plan_progress()['status'] == 'running'
    assert run_tasks(recursive=True) == 4  # a task a range
    dry_run = api.get_snapshot(snap.id).plan_progress()
    assert dry_run['plan'] == {
        'Dummy': {'created': 4, 'changed': 2, 'deleted': 3}}
    assert sorted(str(e.key()) + e.title for e in Dummy.all()) == state
    assert api.get_snapshot(snap.id).restore_progress() is None


def test_selective_restore_touches_only_the_kinds_named(
        make_entities, finished_snapshot, run_tasks):
    make_entities(Dummy, 4)
    make_entities(Yummy, 4)
    snap = finished_snapshot()
    make_entities(Dummy, 2)
    make_entities(Yummy, 2)
    snap.restore(kinds=['Yummy'])
    run_tasks(recursive=True)
    assert (Dummy.all().count(), Yummy.all().count()) == (6, 4)
    with pytest.raises(InvalidInput):
        snap.restore(kinds=['Elsewhere'])


def test_progress_and_verify_report_a_damaged_range(make_entities,
                                                    finished_snapshot):
    make_entities(Dummy, 25)
    snap = finished_snapshot(['Dummy'], batchsize=10)
    assert snap.progress() == {'ranges_done': 3, 'ranges_total': 3,
                               'entities': 25, 'bytes': snap.stored_bytes,
                               'by_kind': {'Dummy': {'ranges_done': 3,
                                                     'ranges_total': 3}}}
    assert snap.stored_bytes == sum(rb.size for rb in snap.range_backups())
    assert snap.verify() == []
    damaged = snap.range_backups()[1]
    damaged.data = damaged.data[:-1] + bytes([damaged.data[-1] ^ 1])
    damaged.put()
    assert snap.verify() == [(damaged.name,
                              'stored bytes do not match their sha256')]


def test_progress_counts_each_kinds_ranges_while_storing(make_entities,
                                                        run_tasks):
    make_entities(Dummy, 30)
    make_entities(Yummy, 10)
    snap = api.create_snapshot(['Dummy', 'Yummy'], batchsize=10)
    seen = set()
    while api.get_snapshot(snap.id).status != snap.STATUS_FINISHED:
        progress = api.get_snapshot(snap.id).progress()
        done = {kind: counts['ranges_done']
                for kind, counts in progress['by_kind'].items()}
        assert progress['ranges_done'] == sum(done.values())
        assert done['Dummy'] <= 3 and done['Yummy'] <= 1
        seen.add(tuple(sorted(done.items())))
        assert run_tasks(max_tasks=1) == 1
    # Ranges were counted in their own kind as they were stored.
    assert len(seen) > 2
    assert api.get_snapshot(snap.id).progress()['by_kind'] == {
        'Dummy': {'ranges_done': 3, 'ranges_total': 3},
        'Yummy': {'ranges_done': 1, 'ranges_total': 1}}


def test_large_snapshots_are_deleted_by_tasks(make_entities,
                                              finished_snapshot, run_tasks,
                                              monkeypatch):
    from lovely_gae.snapshot.work import ranges
    monkeypatch.setattr(ranges, '_PURGE_BATCH', 3)
    monkeypatch.setattr(ranges, '_PURGE_INLINE', 2)
    make_entities(Dummy, 100)
    snap = finished_snapshot(['Dummy'], batchsize=10)
    snap.delete()
    assert db.get(snap.key()) is None
    assert 0 < RangeBackup.all().count() < 10
    run_tasks(recursive=True)
    assert RangeBackup.all().count() == 0


def test_empty_snapshots_never_push_out_those_that_hold_data(
        make_entities, finished_snapshot):
    make_entities(Dummy, 3)
    held = finished_snapshot(['Dummy']).id
    # Nights of a kind misspelt in cron (or of an app that lost its data):
    empty = [finished_snapshot(['Dumy']).id for _ in range(3)]
    assert api.prune(keep=2) == []
    newer = finished_snapshot(['Dummy']).id
    assert api.prune(keep=1) == empty[::-1] + [held]  # older than newer
    assert [s.id for s in api.list_snapshots()] == [newer]


def test_prune_keeps_the_newest_finished_snapshots(make_entities,
                                                   finished_snapshot):
    make_entities(Dummy, 3)
    ids = [finished_snapshot(['Dummy']).id for _ in range(4)]
    running = api.create_snapshot(['Dummy'])
    assert api.prune(keep=2) == [ids[1], ids[0]]
    assert sorted(s.id for s in api.list_snapshots()) == [
        ids[2], ids[3], running.id]
    assert RangeBackup.all().count() == 2
    with pytest.raises(InvalidInput):
        api.prune(keep=-1)


def test_a_snapshot_of_30_kinds_finishes(gae_testbed, run_tasks):
    """A kind's markers are recorded in a transaction that must not read
    the markers of every kind known before it (25 entity groups at most)."""
    from google.appengine.api import datastore
    kinds = ['Kind%02d' % number for number in range(30)]
    for kind in kinds:
        entity = datastore.Entity(kind)
        entity['title'] = kind
        datastore.Put(entity)
    snap = api.create_snapshot(kinds)
    run_tasks(recursive=True)
    snap = api.get_snapshot(snap.id)
    assert snap.status == snap.STATUS_FINISHED, snap.error
    assert snap.progress()['entities'] == 30
    assert sorted(snap.markers) == kinds


@pytest.mark.parametrize('start', [
    'from lovely_gae.snapshot import api',
    'from lovely_gae.snapshot import getApp; getApp()',  # the app's worker
    'from lovely_gae.local import LocalClient; LocalClient()',  # the CLI's
])
def test_a_fresh_process_has_every_task_and_action_of_the_package(start):
    """A worker that never started a restore still runs its tasks: ``api``,
    which every way to start or run work imports, registers every task the
    package's modules define, and what ``Snapshot.restore`` and ``delete``
    start. (The package itself imports nothing: ``--url`` needs no SDK.)"""
    script = (
        start + '\n'
        'import importlib, pkgutil, lovely_gae\n'
        'from lovely_gae import tasks\n'
        'from lovely_gae.snapshot import models\n'
        'first = set(tasks._registry)\n'
        'for info in pkgutil.walk_packages(lovely_gae.__path__, "lovely_gae."):\n'
        '    importlib.import_module(info.name)\n'
        'print(sorted(set(tasks._registry) - first))\n'
        'print(sorted(models.ACTIONS))\n')
    assert _in_a_fresh_process(script) == [
        '[]', "['delete', 'dry_run', 'restore']"]


def test_a_snapshot_read_through_its_model_alone_can_be_deleted():
    """``Snapshot.delete`` (and ``restore``) start work that ``api``
    registers: a caller that imported only the model gets it on first use,
    not a ``KeyError`` (the package imports nothing of it up front)."""
    script = (
        'from lovely_gae.local import start_testbed\n'
        'start_testbed()\n'
        'from lovely_gae.snapshot.models import Snapshot\n'
        'snap = Snapshot(status=Snapshot.STATUS_FINISHED, kinds=[])\n'
        'snap.put()\n'
        'snap.delete()\n'
        'print(Snapshot.get_by_id(snap.key().id()))\n')
    assert _in_a_fresh_process(script)[-1] == 'None'


def _in_a_fresh_process(script):
    """The lines ``script`` prints in a Python process of its own; it must
    end well."""
    done = subprocess.run([sys.executable, '-c', script], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.splitlines()
