"""Every endpoint of the app, in-process with webtest."""
import bz2
import datetime
import hashlib
from urllib.parse import quote

import pytest
from google.appengine.api import datastore
from google.appengine.datastore.entity_bytes_pb2 import Property
from google.appengine.ext import db
from webob import Request
from webtest import TestApp

from lovely_gae import async_, defaults, entities
from lovely_gae.entities import EntityProto
from lovely_gae.snapshot import getApp, storage
from lovely_gae.snapshot.transfer import wire
from lovely_gae.snapshot.app import data
from lovely_gae.snapshot.app.handlers import HANDLER_TUPLES
from lovely_gae.snapshot.models import RangeBackup, Snapshot
from tests.conftest import Dummy, Unread, Yummy

CREATE = '/lovely.gae/snapshot.CreateSnapshotHandler'
SNAPSHOTS = '/lovely.gae/snapshots'


@pytest.fixture
def app(gae_testbed):
    return TestApp(getApp())


def stored_bytes(rb):
    return b''.join(rb.iter_parts(verify=False))


def test_get_creates_a_snapshot_of_the_kinds_in_order(app, make_entities):
    res = app.get(CREATE + '?kinds=Yummy&kinds=Dummy&batchsize=50')
    snap = Snapshot.all().get()
    assert res.content_type == 'text/plain'
    assert res.text == "Created Snapshot %d\nKinds: ['Yummy', 'Dummy']" % (
        snap.id)
    assert snap.batchsize == 50


def test_post_with_a_form_creates_a_snapshot(app, make_entities):
    make_entities(Dummy, 3)
    res = app.post(CREATE, {'kinds': 'Dummy'})
    assert "Kinds: ['Dummy']" in res.text
    assert Snapshot.all().count() == 1


@pytest.mark.parametrize('query, reason', [
    ('batchsize=0', "invalid batchsize 0"),
    ('batchsize=abc', "invalid batchsize 'abc'"),
    ('batchsize=-1', "invalid batchsize '-1'"),
    ('kinds=', "invalid kind ''"),
    ('kinds=Dummy&kinds=__kind__', "invalid kind '__kind__'"),
    ('namespace=a%20b', "invalid namespace 'a b'"),
])
def test_bad_input_gets_400_with_a_one_line_reason(app, query, reason):
    for path in (CREATE + '?' + query, SNAPSHOTS + '?' + query):
        res = app.post(path, status=400)
        assert res.text.startswith(reason)
        assert res.text.count('\n') == 1
    assert Snapshot.all().count() == 0
    assert async_.get_tasks() == []


def test_other_methods_and_paths_are_refused(app):
    res = app.put(CREATE, status=405)
    assert res.headers['Allow'] == 'GET, POST'
    assert app.get('/lovely.gae/nothing', status=404).text.startswith(
        'no such page')
    assert Snapshot.all().count() == 0


def test_every_route_refuses_the_methods_it_does_not_serve(app,
                                                           finished_snapshot):
    snap = finished_snapshot(['Dummy'])
    [rb] = snap.range_backups()
    for path, handler in HANDLER_TUPLES:
        url = (path.replace('<id>', str(snap.id))
               .replace('<name:path>', rb.name))
        for method in ('PUT', 'DELETE', 'PATCH', 'GET', 'POST', 'HEAD'):
            if method not in handler.methods:
                res = app.request(url, method=method, status=405)
                assert set(res.headers['Allow'].split(', ')) == \
                    handler.methods
    assert Snapshot.all().count() == 1


def test_list_and_show_snapshots_as_json(app, make_entities,
                                         finished_snapshot):
    make_entities(Dummy, 5)
    old = finished_snapshot(['Dummy'])
    new = finished_snapshot(['Dummy'], batchsize=2)
    listed = app.get(SNAPSHOTS).json['snapshots']
    assert [s['id'] for s in listed] == [new.id, old.id]
    assert app.get(SNAPSHOTS + '?limit=1').json['snapshots'] == listed[:1]
    shown = app.get('%s/%d' % (SNAPSHOTS, new.id)).json
    assert shown == listed[0]
    assert {'id', 'status', 'kinds', 'namespace', 'progress',
            'created'} <= set(shown)
    assert shown['progress'] == {'ranges_done': 3, 'ranges_total': 3,
                                 'entities': 5,
                                 'bytes': new.progress()['bytes'],
                                 'by_kind': {'Dummy': {'ranges_done': 3,
                                                       'ranges_total': 3}}}
    assert app.get(SNAPSHOTS + '/latest').json['id'] == new.id


def _started(count, make_entities):
    """``count`` snapshots, started (no task run), newest first."""
    from lovely_gae.snapshot import api
    make_entities(Dummy, 1)
    return [api.create_snapshot(['Dummy']).id for _ in range(count)][::-1]


def _every_page(app, query=''):
    """The ids of every page of the listing, and the pages' lengths."""
    ids, lengths, after = [], [], None
    while True:
        page = app.get(SNAPSHOTS + '?' + query + (
            '&after=' + after if after else '')).json
        ids += [s['id'] for s in page['snapshots']]
        lengths.append(len(page['snapshots']))
        after = page['next']
        if after is None:
            return ids, lengths


def test_the_listing_comes_a_page_at_a_time(app, make_entities,
                                            monkeypatch):
    """A nightly cron makes a list of years: never one answer."""
    from lovely_gae.snapshot import calls
    monkeypatch.setattr(calls, 'LIST_PAGE', 3)
    monkeypatch.setattr(calls, 'MAX_LIST_PAGE', 4)
    ids = _started(7, make_entities)
    assert _every_page(app) == (ids, [3, 3, 1])  # by default
    assert _every_page(app, 'limit=2') == (ids, [2, 2, 2, 1])
    assert _every_page(app, 'limit=4') == (ids, [4, 3])
    assert 'invalid limit' in app.get(SNAPSHOTS + '?limit=5',
                                      status=400).text
    # Deleted or new since the first page: the next one goes on from its
    # place all the same.
    first = app.get(SNAPSHOTS + '?limit=2').json
    db.delete([Snapshot.key_for(ids[1]), Snapshot.key_for(ids[2])])
    _started(1, make_entities)
    rest = app.get(SNAPSHOTS, {'after': first['next']}).json
    assert [s['id'] for s in rest['snapshots']] == ids[3:6]


def test_a_page_of_the_listing_stops_at_its_bytes(app, make_entities,
                                                  monkeypatch):
    """A snapshot of many kinds is long: a page stays within its bytes,
    but holds one snapshot at least."""
    from lovely_gae.snapshot import calls
    ids = _started(3, make_entities)
    monkeypatch.setattr(calls, 'LIST_BYTES', 1)
    assert _every_page(app) == (ids, [1, 1, 1])


def test_snapshots_created_at_once_are_each_listed_once(app, make_entities):
    """The cursor holds the created time; ties go by id."""
    ids = _started(5, make_entities)
    snaps = db.get([Snapshot.key_for(i) for i in ids])
    for snap in snaps:
        snap.created = snaps[0].created
    db.put(snaps)
    assert _every_page(app, 'limit=2') == (sorted(ids), [2, 2, 1])


@pytest.mark.parametrize('after', [
    'x', '1.2.3', '1.', '9' * 20 + '.1', '9' * 19 + '.1', '١.1'])
def test_a_cursor_not_of_a_listing_is_400(app, after):
    assert app.get(SNAPSHOTS, {'after': after}, status=400).text.startswith(
        'invalid after ')
    assert app.get(SNAPSHOTS + '?after=1.2&after=1.3', status=400).text == (
        'invalid after: send one cursor\n')


def test_unknown_snapshots_are_404_and_bad_params_400(app):
    assert app.get(SNAPSHOTS + '/999', status=404).text == \
        'no snapshot with id 999\n'
    assert app.get(SNAPSHOTS + '/abc', status=400).text == (
        "invalid snapshot id 'abc': must be 'latest' or an integer from 1 "
        "to 9223372036854775807\n")
    app.get(SNAPSHOTS + '/latest', status=404)
    app.post(SNAPSHOTS + '/999/restore', status=404)
    app.post(SNAPSHOTS + '/999/delete', status=404)
    app.get(SNAPSHOTS + '/999/manifest', status=404)
    assert 'invalid limit' in app.get(SNAPSHOTS + '?limit=x', status=400).text


def test_post_creates_a_snapshot_and_answers_201(app, make_entities,
                                                 run_tasks):
    make_entities(Yummy, 3)
    res = app.post(SNAPSHOTS, {'kinds': ['Yummy'], 'batchsize': '2'},
                   status=201)
    assert res.json['status'] == 'started'
    assert res.json['kinds'] == ['Yummy']
    run_tasks(recursive=True)
    assert app.get('%s/%d' % (SNAPSHOTS, res.json['id'])).json[
        'progress']['entities'] == 3


def test_restore_dry_run_changes_nothing_and_restore_does(
        app, make_entities, finished_snapshot, run_tasks):
    keys = make_entities(Dummy, 10)
    snap = finished_snapshot(['Dummy'])
    db.delete(keys[:4])
    url = '%s/%d/restore' % (SNAPSHOTS, snap.id)
    res = app.post(url, {'dry_run': 'true'}, status=202)
    assert (res.json['dry_run'], res.json['plan']['status'],
            res.json['plan']['plan']) == (True, 'running', None)
    assert run_tasks(recursive=True) == 1  # its one range counted
    assert app.get('%s/%d' % (SNAPSHOTS, snap.id)).json['plan']['plan'] == {
        'Dummy': {'created': 4, 'changed': 0, 'deleted': 0}}
    assert Dummy.all().count() == 6
    res = app.post(url, {'kinds': 'Dummy'}, status=202)
    assert res.json['restore']['status'] == 'running'
    run_tasks(recursive=True)
    assert Dummy.all().count() == 10
    assert app.get('%s/%d' % (SNAPSHOTS, snap.id)).json['restore'][
        'status'] == 'finished'


def test_a_restore_is_shown_by_the_id_its_start_answered(
        app, make_entities, finished_snapshot, run_tasks, monkeypatch):
    """Restores of other kinds of one snapshot may run at once: each
    caller follows its own by the id its start answered, not the latest."""
    make_entities(Dummy, 3)
    make_entities(Yummy, 2)
    snap = finished_snapshot(['Dummy', 'Yummy'])
    other = finished_snapshot(['Dummy'])
    url = '%s/%d/restore' % (SNAPSHOTS, snap.id)
    mine = app.post(url, {'kinds': 'Dummy'}, status=202).json['restore']
    theirs = app.post(url, {'kinds': 'Yummy'}, status=202).json['restore']
    assert app.get('%s/%d' % (SNAPSHOTS, snap.id)).json['restore'][
        'id'] == theirs['id']
    path = '%s/%d/restores/%s' % (SNAPSHOTS, snap.id, mine['id'])
    # One get by key: the snapshot is not read.
    monkeypatch.setattr(Snapshot, 'get_by_id', lambda *args: pytest.fail(
        'the snapshot was read'))
    assert app.get(path).json == mine
    run_tasks(recursive=True)
    shown = app.get(path).json
    assert (shown['id'], shown['kinds'], shown['status'],
            shown['entities']) == (mine['id'], ['Dummy'], 'finished', 3)
    assert app.get('%s/%d/restores/%s' % (
        SNAPSHOTS, other.id, mine['id']), status=404).text == (
        'no restore %s of snapshot %d\n' % (mine['id'], other.id))
    assert app.get('%s/%d/restores/%s' % (SNAPSHOTS, snap.id, 'f' * 32),
                   status=404).text.startswith('no restore ')


def test_restore_refuses_unknown_kinds_and_unfinished_snapshots(
        app, make_entities, finished_snapshot):
    make_entities(Dummy, 3)
    snap = finished_snapshot(['Dummy'])
    res = app.post('%s/%d/restore' % (SNAPSHOTS, snap.id),
                   {'kinds': 'Yummy'}, status=400)
    assert res.text.startswith("invalid kind 'Yummy'")
    app.post('%s/%d/restore?dry_run=maybe' % (SNAPSHOTS, snap.id),
             status=400)
    started = app.post(SNAPSHOTS, {'kinds': 'Dummy'}).json
    res = app.post('%s/%d/restore' % (SNAPSHOTS, started['id']), status=409)
    assert res.text == 'snapshot %d is started, not finished\n' % (
        started['id'])
    assert len(async_.get_tasks()) == 1  # the new snapshot's own


def test_delete_and_prune(app, make_entities, finished_snapshot):
    make_entities(Dummy, 3)
    first, second, third = [finished_snapshot(['Dummy']) for _ in range(3)]
    res = app.post('%s/%d/delete' % (SNAPSHOTS, second.id))
    assert res.json == {'deleted': [second.id]}
    assert db.get(second.key()) is None
    assert app.post('/lovely.gae/prune', status=400).text == \
        'keep is required\n'
    app.post('/lovely.gae/prune?keep=-1', status=400)
    assert app.post('/lovely.gae/prune?keep=1').json == {
        'deleted': [first.id]}
    assert [s.id for s in Snapshot.all()] == [third.id]


def test_prune_deletes_only_the_prunable_ids_it_was_sent(
        app, make_entities, finished_snapshot):
    """``only``: the ids a user agreed to; the others stay, prunable or
    not (cron's GET sends none, and prunes all)."""
    make_entities(Dummy, 3)
    first, second, third = [finished_snapshot(['Dummy']) for _ in range(3)]
    assert app.post('/lovely.gae/prune?keep=1', {'only': [
        first.id, third.id]}).json == {'deleted': [first.id]}
    assert app.post('/lovely.gae/prune?keep=0&only=%d' % second.id).json == {
        'deleted': [second.id]}
    assert [s.id for s in Snapshot.all()] == [third.id]


def test_manifest_lists_every_range_with_its_checksum(app, make_entities,
                                                      finished_snapshot):
    make_entities(Dummy, 25)
    make_entities(Yummy, 3)
    snap = finished_snapshot(['Dummy', 'Yummy'], batchsize=10)
    manifest = app.get('%s/%d/manifest' % (SNAPSHOTS, snap.id)).json
    assert manifest['snapshot']['id'] == snap.id
    backups = snap.range_backups()
    assert [r['name'] for r in manifest['ranges']] == [b.name for b in
                                                       backups]
    first = manifest['ranges'][0]
    assert first == {
        'name': backups[0].name, 'kind': 'Dummy', 'position': 0,
        'count': 10, 'size': backups[0].size, 'codec': 'bz2',
        'raw_size': len(bz2.decompress(stored_bytes(backups[0]))),
        'format': 'entityproto-delimited/1',
        'sha256': hashlib.sha256(stored_bytes(backups[0])).hexdigest(),
        'path': '/lovely.gae/snapshots/%d/ranges/RB%%3A%d%%3ADummy%%3A'
                '0000000000%%3A%d' % (snap.id, snap.id, backups[0].size)}
    assert sum(r['count'] for r in manifest['ranges']) == 28


def test_a_range_deleted_while_its_page_is_read_is_a_conflict(
        app, make_entities, finished_snapshot, monkeypatch):
    make_entities(Dummy, 25)
    snap = finished_snapshot(['Dummy'], batchsize=10)
    listed = data._page

    def page_then_delete(*args):  # the snapshot's deletion, in between
        keys, after = listed(*args)
        db.delete(keys[1])
        return keys, after
    monkeypatch.setattr(data, '_page', page_then_delete)
    res = app.get('%s/%d/manifest' % (SNAPSHOTS, snap.id), status=409)
    assert res.text.startswith('range RB:%d:Dummy:0000000001:' % snap.id)


def test_unfinished_snapshots_cannot_be_downloaded(app, make_entities):
    make_entities(Dummy, 3)
    started = app.post(SNAPSHOTS, {'kinds': 'Dummy'}).json
    res = app.get('%s/%d/manifest' % (SNAPSHOTS, started['id']), status=409)
    assert 'not finished' in res.text


def test_a_range_is_served_as_stored_with_etag_and_ranges(
        app, make_entities, finished_snapshot):
    make_entities(Dummy, 50)
    snap = finished_snapshot(['Dummy'])
    [entry] = app.get('%s/%d/manifest' % (SNAPSHOTS, snap.id)).json['ranges']
    [rb] = snap.range_backups()
    data = stored_bytes(rb)
    res = app.get(entry['path'])
    assert res.body == data
    assert res.content_type == 'application/octet-stream'
    assert res.headers['Content-Length'] == str(len(data))
    assert res.headers['ETag'] == '"%s"' % rb.sha256
    assert res.headers['Accept-Ranges'] == 'bytes'
    res = app.get(entry['path'], headers={'Range': 'bytes=100-'},
                  status=206)
    assert res.body == data[100:]
    assert res.headers['Content-Range'] == 'bytes 100-%d/%d' % (
        len(data) - 1, len(data))
    # A range of another copy than the one asked for: all of it again.
    res = app.get(entry['path'], headers={'Range': 'bytes=100-',
                                          'If-Range': '"other"'}, status=200)
    assert res.body == data
    app.get(entry['path'], headers={'Range': 'bytes=%d-' % len(data)},
            status=416)
    assert app.head(entry['path']).body == b''


def test_ranges_of_a_range_stored_in_several_parts(
        app, make_entities, finished_snapshot, monkeypatch):
    monkeypatch.setattr(defaults, 'PART_SIZE', 300)
    make_entities(Dummy, 150, )
    snap = finished_snapshot(['Dummy'], codec='none')
    [rb] = snap.range_backups()
    assert rb.parts > 3
    data = stored_bytes(rb)
    [entry] = app.get('%s/%d/manifest' % (SNAPSHOTS, snap.id)).json['ranges']
    assert app.get(entry['path']).body == data
    for start, stop in [(0, 299), (299, 301), (650, 1300), (901, len(data))]:
        res = app.get(entry['path'], status=206, headers={
            'Range': 'bytes=%d-%d' % (start, stop - 1)})
        assert res.body == data[start:stop]


def test_ranges_of_other_snapshots_or_names_are_404(app, make_entities,
                                                    finished_snapshot):
    make_entities(Dummy, 3)
    one, two = finished_snapshot(['Dummy']), finished_snapshot(['Dummy'])
    [rb] = one.range_backups()
    app.get('%s/%d/ranges/%s' % (SNAPSHOTS, two.id, rb.name), status=404)
    app.get('%s/%d/ranges/RB:%d:nothing' % (SNAPSHOTS, one.id, one.id),
            status=404)


def _upload_body(*entity_protos):
    """An upload body of any number of entities (a client sends 500 at most)."""
    return b''.join(storage.varint(len(record)) + record for record in (
        e.SerializeToString() for e in entity_protos))


def test_upload_puts_entities_under_this_apps_id(app, make_entities):
    keys = make_entities(Dummy, 3)
    protos = entities.get([entities.ref(k) for k in keys])
    db.delete(keys)
    for proto in protos:
        proto.key.app = 's~production'
    res = app.post(SNAPSHOTS.replace('snapshots', 'upload'),
                   _upload_body(*protos),
                   content_type=wire.CONTENT_TYPE)
    assert res.json == {'put': 3}
    assert sorted(d.title for d in db.get(keys)) == ['0', '1', '2']


@pytest.mark.parametrize('body, content_type, status, reason', [
    (b'\x05abc', wire.CONTENT_TYPE, 400, 'stored range ends inside'),
    (b'\x03abc', wire.CONTENT_TYPE, 400, 'cannot be decoded'),
    (b'', 'application/octet-stream', 415, 'send application/x-lovely'),
])
def test_a_bad_upload_puts_nothing(app, make_entities, body, content_type,
                                   status, reason):
    keys = make_entities(Dummy, 2)
    good = entities.get([entities.ref(keys[0])])[0]
    db.delete(keys)
    res = app.post('/lovely.gae/upload', _upload_body(good) + body,
                   content_type=content_type, status=status)
    assert reason in res.text
    assert Dummy.all().count() == 0


def test_structured_values_nested_too_deep_are_a_400(app):
    """Values nested deeper than ``rewrite.MAX_DEPTH`` are a one-line 400,
    as every other bad entity is, and nothing is put."""
    inner = EntityProto()
    for _ in range(105):
        outer = EntityProto()
        prop = outer.raw_property.add()
        prop.name, prop.multiple = 'n', False
        prop.meaning = Property.ENTITY_PROTO
        prop.value.stringValue = inner.SerializePartialToString()
        inner = outer
    inner.key.app = 'x'
    element = inner.key.path.element.add()
    element.type, element.id = 'K', 5
    inner.entity_group.element.add().CopyFrom(element)
    record = inner.SerializePartialToString()
    res = app.post(SNAPSHOTS.replace('snapshots', 'upload'),
                   wire.storage.varint(len(record)) + record,
                   content_type=wire.CONTENT_TYPE, status=400)
    assert res.text == ('structured values nested deeper than 100 '
                        'levels\n')
    assert datastore.Query('K').Count() == 0


def test_uploads_into_the_librarys_own_namespace_are_refused(
        app, finished_snapshot, make_entities):
    make_entities(Dummy, 1)
    snap = finished_snapshot(['Dummy'])
    proto = async_.Task(
        'forged', func='os:system', payload='{"args": ["true"]}',
        due=datetime.datetime(2000, 1, 1), max_attempts=1,
        retry_delay=0.0).to_proto()
    res = app.post('/lovely.gae/upload', _upload_body(proto),
                   content_type=wire.CONTENT_TYPE, status=400)
    assert "namespace 'lovely_gae'" in res.text
    assert async_.get_tasks() == []
    assert RangeBackup.all().count() == len(snap.range_backups())


@pytest.mark.parametrize('kind, name, namespace, reason', [
    ('__Stat_Kind__', 'a', '', "kind '__Stat_Kind__', which the datastore "
     'keeps for itself or finds too long'),
    ('K' * 1501, 'a', '', 'which the datastore keeps for itself or finds '
     'too long'),
    ('K', 'n' * 1501, '', 'a name longer than 1500 bytes'),
    ('K', 'a', 'no spaces', "namespace 'no spaces', which is not one the "
     'datastore takes'),
])
def test_uploads_of_keys_production_refuses_are_refused(app, kind, name,
                                                        namespace, reason):
    proto = EntityProto()
    proto.key.app, proto.key.name_space = 'x', namespace
    element = proto.key.path.element.add()
    element.type, element.name = kind, name
    proto.entity_group.element.add().CopyFrom(element)
    res = app.post('/lovely.gae/upload', _upload_body(proto),
                   content_type=wire.CONTENT_TYPE, status=400)
    assert reason in res.text
    assert datastore.Query(kind[:100], namespace='').Count() == 0


def test_worker_runs_due_tasks_and_says_what_is_left(app, make_entities):
    make_entities(Dummy, 5)
    app.post(SNAPSHOTS, {'kinds': 'Dummy'})
    async_.defer(print, countdown=3600)
    assert app.get('/lovely.gae/worker').json == {'ran': 3, 'queued': 1}
    assert Snapshot.all().get().status == 'finished'
    assert app.post('/lovely.gae/worker?seconds=5').json == {
        'ran': 0, 'queued': 1}
    for bad in ('abc', '0', '-1', '1000', 'nan'):
        app.get('/lovely.gae/worker?seconds=' + bad, status=400)


@pytest.fixture
def a_range(app, make_entities, finished_snapshot):
    """``(path, data)`` of the one range of a finished snapshot."""
    make_entities(Dummy, 50)
    snap = finished_snapshot(['Dummy'])
    [entry] = app.get('%s/%d/manifest' % (SNAPSHOTS, snap.id)).json['ranges']
    [rb] = snap.range_backups()
    return entry['path'], stored_bytes(rb)


@pytest.mark.parametrize('header', [
    'bytes=--5', 'bytes=5-3', 'bytes=abc', 'bytes=0--1', 'bytes=-',
    'bytes=1-2-3', 'bytes=' + '9' * 5000 + '-1'])
def test_a_malformed_range_is_400(app, a_range, header):
    path, _ = a_range
    res = app.get(path, headers={'Range': header}, status=400)
    assert res.text.startswith('invalid Range %r: ask for one range'
                               % header[:60])
    assert res.text.count('\n') == 1


@pytest.mark.parametrize('header', [
    'bytes=-0', 'bytes=99999999999999999999999-', 'bytes=%(size)d-',
    'bytes=' + '9' * 5000 + '-'])
def test_a_range_that_selects_nothing_is_416(app, a_range, header):
    path, data = a_range
    res = app.get(path, headers={'Range': header % {'size': len(data)}},
                  status=416)
    assert res.headers['Content-Range'] == 'bytes */%d' % len(data)
    # Unless it is of another copy than the one the client has: all of it.
    assert app.get(path, headers={'Range': header % {'size': len(data)},
                                  'If-Range': '"other"'}).body == data


@pytest.mark.parametrize('header, start, stop', [
    ('bytes=-5', -5, None), ('bytes=0-0', 0, 1), ('bytes = 1 - 2', 1, 3),
    ('BYTES=3-', 3, None), ('bytes=10-99999999999999999999', 10, None),
    ('bytes=-99999999999999999999', 0, None),
    ('bytes=-' + '9' * 5000, 0, None)])
def test_one_range_of_bytes_is_206(app, a_range, header, start, stop):
    path, data = a_range
    res = app.get(path, headers={'Range': header}, status=206)
    assert res.body == data[start:stop]


@pytest.mark.parametrize('header', ['bytes=0-1,3-4', 'items=0-1'])
def test_several_ranges_or_another_unit_get_the_whole_range(app, a_range,
                                                            header):
    path, data = a_range
    assert app.get(path, headers={'Range': header}, status=200).body == data


@pytest.mark.parametrize('method, path, reason', [
    ('GET', SNAPSHOTS + '/9223372036854775808', 'invalid snapshot id'),
    ('GET', SNAPSHOTS + '/%d' % 2 ** 64, 'invalid snapshot id'),
    ('GET', SNAPSHOTS + '/%d/manifest' % 2 ** 64, 'invalid snapshot id'),
    ('GET', SNAPSHOTS + '/%d/ranges/RB:1:x' % 2 ** 64, 'invalid snapshot id'),
    ('POST', SNAPSHOTS + '/%d/restore' % 2 ** 64, 'invalid snapshot id'),
    ('POST', SNAPSHOTS + '/%d/delete' % 2 ** 64, 'invalid snapshot id'),
    ('GET', SNAPSHOTS + '/0', 'invalid snapshot id'),
    ('GET', SNAPSHOTS + '/1_0', 'invalid snapshot id'),
    ('GET', SNAPSHOTS + '/%20%31', 'invalid snapshot id'),
    ('GET', SNAPSHOTS + '/%D9%A1', 'invalid snapshot id'),
    ('GET', SNAPSHOTS + '/' + '1' * 5000, 'invalid snapshot id'),
    ('GET', SNAPSHOTS + '?limit=1001', 'invalid limit'),
    ('GET', SNAPSHOTS + '?limit=%d' % 2 ** 31, 'invalid limit'),
    ('GET', SNAPSHOTS + '?limit=%d' % 2 ** 64, 'invalid limit'),
    ('GET', SNAPSHOTS + '?limit=1_0', 'invalid limit'),
    ('POST', '/lovely.gae/prune?keep=%d' % 2 ** 63, 'invalid keep'),
    ('POST', '/lovely.gae/prune?keep=%D9%A1', 'invalid keep'),
    ('POST', '/lovely.gae/prune?keep=1&only=0', 'invalid only'),
    ('POST', '/lovely.gae/prune?keep=1&only=%d' % 2 ** 64, 'invalid only'),
    ('POST', '/lovely.gae/prune?keep=1&only=1&only=x', 'invalid only'),
    ('GET', SNAPSHOTS + '/%d/restores/%s' % (2 ** 64, 'f' * 32),
     'invalid snapshot id'),
    ('GET', SNAPSHOTS + '/latest/restores/%s' % ('f' * 32),
     'invalid snapshot id'),
    ('GET', SNAPSHOTS + '/1/restores/' + 'F' * 32, 'invalid restore id'),
    ('GET', SNAPSHOTS + '/1/restores/' + 'f' * 5000, 'invalid restore id'),
    ('POST', SNAPSHOTS + '?batchsize=%d' % 2 ** 64, 'invalid batchsize'),
    ('POST', SNAPSHOTS + '?batchsize=' + '1' * 5000, 'invalid batchsize'),
    ('POST', SNAPSHOTS + '?batchsize=%D9%A1', 'invalid batchsize'),
    ('POST', SNAPSHOTS + '?batchsize=%201', 'invalid batchsize'),
    ('POST', '/lovely.gae/worker?seconds=1_0', 'invalid seconds'),
    ('POST', '/lovely.gae/worker?seconds=%D9%A1', 'invalid seconds'),
])
def test_ids_and_numbers_out_of_range_are_400(app, make_entities, method,
                                              path, reason):
    make_entities(Dummy, 1)
    res = app.request(path, method=method, status=400)
    assert res.text.startswith(reason)
    assert res.text.count('\n') == 1
    assert Snapshot.all().count() == 0


def test_an_upload_of_more_entities_than_a_put_takes_is_refused_undecoded(
        app, make_entities, monkeypatch):
    keys = make_entities(Dummy, defaults.MAX_REQUEST_ENTITIES + 1)
    protos = entities.get([entities.ref(k) for k in keys])
    db.delete(keys)
    decode = wire.decode
    monkeypatch.setattr(wire, 'decode', lambda body: pytest.fail('decoded'))
    res = app.post('/lovely.gae/upload', _upload_body(*protos),
                   content_type=wire.CONTENT_TYPE, status=413)
    assert res.text == 'send at most 500 entities per request\n'
    assert Dummy.all().count() == 0
    monkeypatch.setattr(wire, 'decode', decode)
    res = app.post('/lovely.gae/upload', _upload_body(*protos[:-1]),
                   content_type=wire.CONTENT_TYPE)
    assert res.json == {'put': 500}


@pytest.mark.parametrize('path, content_type, length', [
    (CREATE, 'application/x-www-form-urlencoded', 64 * 1024 + 1),
    (SNAPSHOTS, 'multipart/form-data; boundary=x', 64 * 1024 + 1),
    ('/lovely.gae/worker', 'application/octet-stream', 64 * 1024 + 1),
    ('/lovely.gae/upload', wire.CONTENT_TYPE, defaults.MAX_REQUEST_BYTES + 1),
])
def test_a_body_over_the_limit_is_refused_unread(gae_testbed, path,
                                                 content_type, length):
    request = Request.blank(path, method='POST', environ={
        'wsgi.input': Unread(), 'CONTENT_LENGTH': str(length),
        'CONTENT_TYPE': content_type})
    res = request.get_response(getApp())
    assert res.status_int == 413
    assert res.text == 'send at most %d bytes in this request\n' % (
        length - 1)
    assert Snapshot.all().count() == 0


def test_a_form_within_the_limit_is_read(app, make_entities):
    make_entities(Dummy, 1)
    body = 'kinds=Dummy&padding=' + 'x' * (64 * 1024 - 20)
    assert len(body) == 64 * 1024
    assert app.post(CREATE, body, content_type=(
        'application/x-www-form-urlencoded')).status_int == 200


def test_a_body_of_unknown_length_is_refused_unread(gae_testbed):
    request = Request.blank(CREATE, method='POST', environ={
        'wsgi.input': Unread(), 'HTTP_TRANSFER_ENCODING': 'chunked',
        'wsgi.input_terminated': True,
        'CONTENT_TYPE': 'application/x-www-form-urlencoded'})
    res = request.get_response(getApp())
    assert res.status_int == 411
    assert res.text == 'Content-Length is required\n'
    assert Snapshot.all().count() == 0


@pytest.mark.parametrize('path', [
    '/lovely.gae/%FF', SNAPSHOTS + '/1/ranges/RB:1:%FF%FE',
    SNAPSHOTS + '/1/ranges/RB%3A1%3A%ED%A0%80', SNAPSHOTS + '/%C0%AF'])
def test_a_path_that_is_not_utf8_is_400(gae_testbed, path):
    token = {'Authorization': 'Bearer s3cret'}
    for app, headers in ((TestApp(getApp()), {}),
                         (TestApp(getApp(token='s3cret')), token)):
        res = app.get(path, headers=headers, status=400)
        assert res.text.startswith('the path is not UTF-8: /lovely.gae/')
        assert res.text.count('\n') == 1
    # A caller without the token learns nothing of it.
    res = TestApp(getApp(token='s3cret')).get(path, status=401)
    assert res.text == 'a bearer token is required\n'


def test_a_range_name_longer_than_a_key_name_is_400(app, a_range):
    path, _ = a_range
    prefix = path.rsplit('/', 1)[0] + '/'
    name = 'RB:%s:' % path.split('/')[3]
    longest = name + 'x' * (defaults.MAX_NAME_BYTES - len(name))
    assert app.get(prefix + longest, status=404).text.startswith(
        'snapshot %s has no range RB:' % path.split('/')[3])
    for name in (longest + 'x', name + 'é' * 750, name + 'x' * 3000):
        res = app.get(prefix + quote(name, safe=''), status=400)
        assert res.text.startswith('invalid range name %r...: longer than '
                                   '1500 bytes' % name[:40])
        assert res.text.count('\n') == 1
