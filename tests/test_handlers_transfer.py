"""The transfer endpoints: the manifest, a range's bytes (ETag, Range
requests), and uploads, with what each refuses."""
import bz2
import datetime
import hashlib
from urllib.parse import quote

import pytest
from google.appengine.api import datastore
from google.appengine.datastore.entity_bytes_pb2 import Property
from google.appengine.ext import db

from lovely_gae import async_, defaults, entities
from lovely_gae.entities import EntityProto
from lovely_gae.snapshot import storage
from lovely_gae.snapshot.transfer import wire
from lovely_gae.snapshot.app import data
from lovely_gae.snapshot.models import RangeBackup
from tests.conftest import SNAPSHOTS, Dummy, Yummy


def stored_bytes(rb):
    return b''.join(rb.iter_parts(verify=False))


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
