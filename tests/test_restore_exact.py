"""A restore puts back exactly what its snapshot held: its tasks may run
twice, a large one checks then writes, each range deletes what the snapshot
lacks, and ndb apps see what a restore or an upload put."""
import pytest
from google.appengine.ext import db, ndb

from lovely_gae import entities
from lovely_gae.snapshot import api
from lovely_gae.snapshot.work import waves
from lovely_gae.snapshot.restores import Restore
from lovely_gae.testing import rerun
from tests.conftest import Dummy, Yummy, all_bytes, until_queued


@pytest.mark.parametrize('size', ['small', 'large'])
def test_restore_tasks_run_twice_do_no_harm(make_entities, finished_snapshot,
                                            run_tasks, request, size):
    if size == 'large':
        request.getfixturevalue('large')
    keys = make_entities(Dummy, 30)
    before = all_bytes(['Dummy'])
    snap = finished_snapshot(['Dummy'], batchsize=10)
    db.delete(keys[::2])
    extra = make_entities(Dummy, 3)
    snap.restore()
    tasks = until_queued(run_tasks, 'restore_ranges')
    for task in tasks + tasks:  # each range twice, as a retry would
        rerun(task)
    assert all_bytes(['Dummy']) == before
    assert db.get(extra) == [None] * 3
    progress = api.get_snapshot(snap.id).restore_progress()
    assert progress['status'] == 'finished'
    later = make_entities(Dummy, 2)  # written after the restore ended
    run_tasks(recursive=True)  # the queued tasks now find their ranges done
    assert None not in db.get(later)
    assert Dummy.all().count() == 32


def test_a_large_restore_checks_then_writes_in_tasks(
        make_entities, finished_snapshot, run_tasks, large):
    keys = make_entities(Dummy, 45)
    make_entities(Yummy, 5)
    before = all_bytes(['Dummy', 'Yummy'])
    snap = finished_snapshot(['Dummy', 'Yummy'], batchsize=10)
    db.delete(keys[:20])
    snap.restore()
    assert api.get_snapshot(snap.id).restore_progress()['status'] == (
        'checking')
    ran = run_tasks(recursive=True)
    # Fan-out pages of 2, check tasks of 2 ranges, write tasks of 2 ranges:
    # Dummy has 5 ranges, Yummy 1: 4 checks, 4 writes, 2 fan-outs of the
    # checks and 1 of the writes: the last check queues their first page.
    assert ran == 11
    assert all_bytes(['Dummy', 'Yummy']) == before
    progress = api.get_snapshot(snap.id).restore_progress()
    assert (progress['status'], progress['ranges_done'],
            progress['entities']) == ('finished', 6, 50)


@pytest.mark.parametrize('dry_run', [False, True])
def test_more_tasks_than_start_with_it_are_fanned_out_to_the_end(
        make_entities, finished_snapshot, run_tasks, large, dry_run):
    """A restore (or dry run) of more tasks than commit with its start
    queues them a page at a time, and finishes."""
    make_entities(Dummy, 90)
    snap = finished_snapshot(['Dummy'], batchsize=10)
    before = all_bytes(['Dummy'])
    db.delete(Dummy.all(keys_only=True).fetch(5))
    changed = Dummy.all().fetch(3, offset=20)
    for dummy in changed:
        dummy.title = 'changed'
    db.put(changed + [Dummy(title='new')])
    after = all_bytes(['Dummy'])
    snap.restore(dry_run=dry_run)
    [record] = Restore.all()
    phase = 'plan' if dry_run else 'check'
    assert waves.leaves(record, phase) > waves.INLINE_RANGES
    run_tasks(recursive=True)
    shown = api.get_snapshot(snap.id)
    if dry_run:
        progress = shown.plan_progress()
        assert progress['status'] == 'finished'
        assert progress['plan'] == {
            'Dummy': {'created': 5, 'changed': 3, 'deleted': 1}}
        assert all_bytes(['Dummy']) == after
    else:
        assert shown.restore_progress()['status'] == 'finished'
        assert all_bytes(['Dummy']) == before


class Note(ndb.Model):
    text = ndb.StringProperty()


def test_ndb_apps_see_what_a_restore_put_back(finished_snapshot, run_tasks):
    kept, changed = Note(text='kept'), Note(text='before')
    ndb.put_multi([kept, changed])
    snap = finished_snapshot(['Note'])
    changed.text = 'after'
    extra = Note(text='extra')
    ndb.put_multi([changed, extra])
    for note in (changed, extra):  # now in ndb's memcache
        assert note.key.get(use_cache=False).text in ('after', 'extra')
    snap.restore()
    run_tasks(recursive=True)
    assert changed.key.get(use_cache=False).text == 'before'
    assert extra.key.get(use_cache=False) is None


@pytest.mark.parametrize('namespace', ['', 'tenant'])
def test_each_range_deletes_what_the_snapshot_lacks_within_its_bounds(
        finished_snapshot, run_tasks, namespace, unsharded):
    def key(number):
        return db.Key.from_path('Dummy', 'k%05d' % number,
                                namespace=namespace)

    def put(numbers, title=None):
        db.put([Dummy(key=key(i), title=title or str(i)) for i in numbers])
    put(range(0, 2400, 2))
    before = all_bytes(['Dummy'], namespace)
    snap = finished_snapshot(['Dummy'], namespace=namespace)
    # Not in it: between its keys, before the first and after the last.
    put(list(range(1, 2400, 2)) + list(range(2400, 2600, 2)), 'new')
    db.put(Dummy(key=db.Key.from_path('Dummy', 'a', namespace=namespace)))
    db.delete([key(i) for i in range(0, 200, 2)])
    put(range(1000, 1100, 2), 'changed')
    snap.restore()
    assert run_tasks(recursive=True) == snap.range_count('Dummy') == 6
    assert all_bytes(['Dummy'], namespace) == before
    progress = api.get_snapshot(snap.id).restore_progress()
    assert (progress['status'], progress['deleted']) == ('finished', 1301)


@pytest.mark.parametrize('dry_run', [False, True])
def test_a_scan_for_stale_entities_goes_on_where_it_stopped(
        finished_snapshot, run_tasks, unsharded, monkeypatch, dry_run):
    """A range may hold any number of entities its snapshot lacks (the
    last range of a kind holds every one added since with larger keys):
    no task reads more than ``STALE_SCAN`` keys of a range; tasks of their
    own go on from where the scan stopped, and the restore is exact (its
    dry run counts them all)."""
    from lovely_gae.snapshot.work import putback
    monkeypatch.setattr(putback, 'STALE_SCAN', 100)
    scans, real = [], putback.delete_stale

    def delete_stale(backups, namespace, stops=None, counting=False):
        if stops is not None:  # a task that goes on
            scans.append(len(stops))
        return real(backups, namespace, stops, counting)
    monkeypatch.setattr(putback, 'delete_stale', delete_stale)

    def put(numbers, title=None):
        db.put([Dummy(key=db.Key.from_path('Dummy', 'k%05d' % i),
                      title=title or str(i)) for i in numbers])
    put(range(0, 600, 2))
    before = all_bytes(['Dummy'])
    snap = finished_snapshot(['Dummy'])
    put(list(range(1, 600, 2)) + list(range(600, 1600)), 'new')
    after = all_bytes(['Dummy'])
    snap.restore(dry_run=dry_run)
    ranges = snap.range_count('Dummy')
    assert run_tasks(recursive=True) == ranges + len(scans)
    assert len(scans) >= 1600 // 100 - ranges  # each read 100 keys at most
    if dry_run:
        plan = api.get_snapshot(snap.id).plan_progress()['plan']
        assert plan['Dummy']['deleted'] == 1300
        assert all_bytes(['Dummy']) == after
        return
    assert all_bytes(['Dummy']) == before
    progress = api.get_snapshot(snap.id).restore_progress()
    assert (progress['status'], progress['deleted']) == ('finished', 1300)


@pytest.mark.parametrize('over_http', [False, True])
def test_ndb_apps_see_what_an_upload_put(gae_testbed, tmp_path, over_http):
    from webtest import TestApp
    from lovely_gae.snapshot import client, getApp
    from lovely_gae.snapshot.transfer import devfile, wire
    note = Note(text='before')
    note.put()
    record = entities.get([note.key.reference()])[0]
    record.property[0].value.stringValue = b'uploaded'
    path = str(tmp_path / 'file')
    with open(path, 'wb') as fileobj:
        writer = devfile.DevFileWriter(fileobj)
        writer.add_many([record.SerializeToString()])
        writer.close()
    # A later request has a context cache of its own: memcache counts.
    assert note.key.get(use_cache=False).text == 'before'  # now cached
    if over_http:
        [(body, _)] = wire.batches([record.SerializeToString()])
        TestApp(getApp()).post('/lovely.gae/upload', body,
                               content_type=wire.CONTENT_TYPE)
    else:
        client.upload_snapshot(path)
    assert note.key.get(use_cache=False).text == 'uploaded'
