import os
import struct

import pytest
from google.appengine.api.datastore_file_stub import DatastoreFileStub
from google.appengine.ext import db, ndb

from lovely_gae import entities
from lovely_gae.exceptions import (OutFileExists, SnapshotNotFinished,
                                   SnapshotNotFound)
from lovely_gae.snapshot import api, client
from lovely_gae.snapshot.transfer import devfile
from lovely_gae.snapshot.client import quiet
from tests.conftest import Dummy, Yummy, sdk_file_testbed


def stored_bytes(kind):
    return sorted(e.SerializeToString() for e in entities.iter_range(kind, ''))


def test_downloaded_file_loads_in_the_file_stub_with_every_entity(
        make_entities, finished_snapshot, tmp_path):
    make_entities(Dummy, 300)
    make_entities(Yummy, 5)
    snap = finished_snapshot(['Dummy', 'Yummy'])
    path = client.download_snapshot(str(tmp_path), snap.id, progress=quiet)
    assert path == str(tmp_path / ('snapshot.%d' % snap.id))
    stub = DatastoreFileStub('lovely-gae-testing', path, None,
                             save_changes=False, use_atexit=False)
    by_kind = stub._DatastoreFileStub__entities_by_kind
    assert sum(map(len, by_kind.values())) == 305
    with open(path, 'rb') as f:
        data = sorted(devfile.iter_entities(f))
    assert data == sorted(stored_bytes('Dummy') + stored_bytes('Yummy'))


def test_latest_finished_snapshot_is_the_default(make_entities,
                                                 finished_snapshot, tmp_path):
    make_entities(Dummy, 3)
    finished_snapshot(['Dummy'])
    newest = finished_snapshot(['Dummy'])
    api.create_snapshot(['Dummy'])  # not finished: never the default
    path = client.download_snapshot(str(tmp_path), progress=quiet)
    assert path.endswith('snapshot.%d' % newest.id)


def test_an_existing_file_is_never_overwritten(make_entities,
                                               finished_snapshot, tmp_path):
    make_entities(Dummy, 3)
    snap = finished_snapshot(['Dummy'])
    target = tmp_path / ('snapshot.%d' % snap.id)
    target.write_bytes(b'mine')
    with pytest.raises(RuntimeError) as info:
        client.download_snapshot(str(tmp_path), snap.id, progress=quiet)
    assert isinstance(info.value, OutFileExists)
    assert str(info.value) == "Out file exists '%s'" % target
    assert target.read_bytes() == b'mine'


def test_unknown_or_unfinished_snapshots_write_nothing(make_entities,
                                                      tmp_path):
    make_entities(Dummy, 3)
    with pytest.raises(SnapshotNotFound):
        client.download_snapshot(str(tmp_path), 999, progress=quiet)
    with pytest.raises(SnapshotNotFound):
        client.download_snapshot(str(tmp_path), progress=quiet)
    snap = api.create_snapshot(['Dummy'])
    with pytest.raises(SnapshotNotFinished):
        client.download_snapshot(str(tmp_path), snap.id, progress=quiet)
    assert os.listdir(tmp_path) == []


def test_a_failure_midway_leaves_no_file(make_entities, finished_snapshot,
                                         tmp_path):
    make_entities(Dummy, 30)
    snap = finished_snapshot(['Dummy'], batchsize=10)

    def fail_on_third(event, **info):
        if event == 'range' and info['position'] == 3:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        client.download_snapshot(str(tmp_path), snap.id,
                                 progress=fail_on_third)
    assert os.listdir(tmp_path) == []


def test_seed_progress_lines(make_entities, finished_snapshot, tmp_path,
                             capsys):
    make_entities(Dummy, 3)
    snap = finished_snapshot(['Dummy'])
    client.download_snapshot(str(tmp_path), snap.id)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == 'Downloading snapshot: %d' % snap.id
    assert out[1].startswith('Downloading RB:%d:Dummy:0000000000:' % snap.id)
    assert out[1].endswith(' pos: 1/1 remaining: 1.0 seconds')
    assert out[2] == 'Saving to %s' % (tmp_path / ('snapshot.%d' % snap.id))


def test_devfile_reader_refuses_anything_but_a_list_of_bytes(tmp_path):
    import pickle
    path = tmp_path / 'evil'
    path.write_bytes(pickle.dumps([b'x', os.system], protocol=3))
    with open(path, 'rb') as f, pytest.raises(ValueError):
        list(devfile.iter_entities(f))


class Parent(db.Model):
    name = db.StringProperty()


class Child(db.Model):
    parent_ref = db.ReferenceProperty(Parent)
    others = db.ListProperty(db.Key)
    email = db.EmailProperty()


def test_rewritten_keys_and_references_load_under_the_target_app(
        gae_testbed, finished_snapshot, tmp_path):
    mum = Parent(name='mum')
    mum.put()
    elsewhere = db.Key.from_path('Parent', 'x', namespace='global')
    kid = Child(parent=mum, parent_ref=mum, others=[mum.key(), elsewhere],
                email='kid@example.com')
    kid.put()
    snap = finished_snapshot(['Parent', 'Child'])
    path = client.download_snapshot(str(tmp_path), snap.id, progress=quiet,
                                    target_app_id='dev~lovely-dev',
                                    target_namespace='dev')
    bed = sdk_file_testbed('dev~lovely-dev', path, save_changes=False)
    try:
        [loaded] = Child.all(namespace='dev').fetch(None)
        assert loaded.key().app() == 'dev~lovely-dev'
        assert loaded.parent().name == 'mum'
        assert loaded.parent_ref.name == 'mum'
        assert loaded.parent_ref.key().app() == 'dev~lovely-dev'
        assert loaded.parent_ref.key().namespace() == 'dev'
        # A reference into another namespace moves app, not namespace.
        assert [(k.app(), k.namespace()) for k in loaded.others] == [
            ('dev~lovely-dev', 'dev'), ('dev~lovely-dev', 'global')]
        assert Child.all().count() == 0  # nothing left in ''
    finally:
        bed.deactivate()


def test_rewrite_to_the_default_namespace_leaves_it_unset(gae_testbed):
    from lovely_gae.snapshot.transfer.rewrite import rewrite_entity
    kid = Child(email='a@b.c', _app=(None, 'tenant'))
    kid.put()
    [proto] = entities.get([entities.ref(kid.key())])
    moved = rewrite_entity(entities.EntityProto.FromString(
        proto.SerializeToString()), app='lovely-gae-testing', namespace='')
    assert not moved.key.HasField('name_space')
    assert list(moved.entity_group.element) == list(
        proto.entity_group.element)
    kid.delete()
    entities.put([moved])
    assert [k.email for k in Child.all()] == ['a@b.c']


def test_scrub_masks_or_drops_each_entity(make_entities, finished_snapshot,
                                          tmp_path):
    make_entities(Dummy, 10)
    snap = finished_snapshot(['Dummy'])

    def scrub(entity):
        [title] = [p for p in entity.property if p.name == 'title']
        if title.value.stringValue == b'3':
            return None
        title.value.stringValue = b'***'
        return entity
    path = client.download_snapshot(str(tmp_path), snap.id, scrub=scrub,
                                    progress=quiet)
    with open(path, 'rb') as f:
        found = [entities.EntityProto.FromString(d)
                 for d in devfile.iter_entities(f)]
    assert len(found) == 9
    assert {p.value.stringValue for e in found for p in e.property} == {
        b'***'}


def test_upload_puts_a_file_back_locally_byte_for_byte(
        make_entities, finished_snapshot, tmp_path):
    make_entities(Dummy, 250)
    make_entities(Yummy, 5)
    before = stored_bytes('Dummy') + stored_bytes('Yummy')
    snap = finished_snapshot(['Dummy', 'Yummy'])
    path = client.download_snapshot(str(tmp_path), snap.id, progress=quiet,
                                    target_app_id='s~production')
    db.delete(Dummy.all(keys_only=True).fetch(None))
    db.delete(Yummy.all(keys_only=True).fetch(None))
    assert client.upload_snapshot(path, batch_bytes=2000) == 255
    assert stored_bytes('Dummy') + stored_bytes('Yummy') == before


def test_upload_of_a_damaged_file_puts_nothing(make_entities,
                                               finished_snapshot, tmp_path):
    make_entities(Dummy, 250)
    snap = finished_snapshot(['Dummy'])
    path = client.download_snapshot(str(tmp_path), snap.id, progress=quiet)
    db.delete(Dummy.all(keys_only=True).fetch(None))
    with open(path, 'rb+') as f:
        f.truncate(os.path.getsize(path) - 100)
    with pytest.raises(ValueError, match='cut short'):
        client.upload_snapshot(path, batch_bytes=2000)
    assert Dummy.all().count() == 0


def test_a_datastore_file_the_sdk_saved_uploads_byte_for_byte(
        tmp_path, monkeypatch):
    from lovely_gae.defaults import LOCAL_APP_ID
    from lovely_gae.local import local_datastore
    monkeypatch.delenv('GAE_APPLICATION', raising=False)
    path = str(tmp_path / 'dev.datastore')
    bed = sdk_file_testbed(LOCAL_APP_ID, path, save_changes=True)
    try:
        db.put([Dummy(title=t) for t in ('', 'x', 'é' * 300)])
        expected = stored_bytes('Dummy')
        bed.get_stub('datastore_v3').Write()  # the SDK's own save
    finally:
        bed.deactivate()
    with open(path, 'rb') as f:
        assert f.read(1) == b']'  # pickle protocol 1, as the SDK saves
    assert devfile.count_kinds(path) == {'Dummy': 3}
    with local_datastore(str(tmp_path / 'other.datastore')):
        assert client.upload_snapshot(path) == 3
        assert stored_bytes('Dummy') == expected


def test_upload_refuses_the_librarys_own_entities(tmp_path, monkeypatch):
    from lovely_gae.local import local_datastore
    monkeypatch.delenv('GAE_APPLICATION', raising=False)
    path = str(tmp_path / 'dev.datastore')
    with local_datastore(path):
        db.put([Dummy(title='x')])
        api.create_snapshot(['Dummy'])
    with local_datastore(str(tmp_path / 'other.datastore')):
        with pytest.raises(ValueError, match="namespace 'lovely_gae'"):
            client.upload_snapshot(path)
        assert Dummy.all().count() == 0


def test_devfile_writes_the_same_bytes_one_by_one_or_many_at_once(
        tmp_path, monkeypatch):
    monkeypatch.setattr(devfile, '_FLUSH_BYTES', 5000)  # flush on the way
    records = [bytes([n % 251]) * (n * 37 % 700) for n in range(2600)]
    one, many = tmp_path / 'one', tmp_path / 'many'
    with open(one, 'wb') as out:
        writer = devfile.DevFileWriter(out)
        for record in records:
            writer.add_many([record])
        writer.close()
    with open(many, 'wb') as out:
        writer = devfile.DevFileWriter(out)
        writer.add_many(records[:1500])
        writer.add_many(iter(records[1500:]))
        writer.close()
    assert writer.count == len(records)
    assert one.read_bytes() == many.read_bytes()
    with open(many, 'rb') as f:
        assert list(devfile.iter_entities(f)) == records


@pytest.mark.parametrize('fetch_ranges, fetch_bytes, gets', [
    (100, 8 << 20, 1),  # 25 ranges: one batch get
    (10, 8 << 20, 3),  # at most 10 ranges a get
    (100, 1, 25),  # a range a get once one range's bytes fill the budget
])
def test_a_local_download_reads_its_ranges_in_bounded_batch_gets(
        make_entities, finished_snapshot, tmp_path, monkeypatch,
        datastore_calls, fetch_ranges, fetch_bytes, gets, unsharded):
    make_entities(Dummy, 250)
    snap = finished_snapshot(['Dummy'], batchsize=10)
    assert snap.range_count('Dummy') == 25
    monkeypatch.setattr(client, '_FETCH_RANGES', fetch_ranges)
    monkeypatch.setattr(client, '_FETCH_BYTES', fetch_bytes)
    datastore_calls.clear()
    path = client.download_snapshot(str(tmp_path), snap.id, progress=quiet)
    assert datastore_calls.count('Get') == gets + 1  # and the snapshot's
    with open(path, 'rb') as f:
        assert sorted(devfile.iter_entities(f)) == stored_bytes('Dummy')


def test_references_to_other_apps_stay_where_they_are(gae_testbed,
                                                      finished_snapshot,
                                                      tmp_path):
    from lovely_gae.snapshot.transfer.rewrite import rewrite_entity
    mum = Parent(name='mum')
    mum.put()
    theirs = db.Key.from_path('Parent', 'x', _app='s~someone-else',
                              namespace='')
    Child(parent_ref=mum, others=[theirs, mum.key()]).put()
    before = stored_bytes('Child')
    snap = finished_snapshot(['Parent', 'Child'])
    path = client.download_snapshot(str(tmp_path), snap.id, progress=quiet)
    # Into the same app again: the bytes it had, other apps' keys and all.
    db.delete(Child.all(keys_only=True).fetch(None))
    assert client.upload_snapshot(path) == 2
    assert stored_bytes('Child') == before
    [child] = entities.get([entities.ref(Child.all().get().key())])
    moved = rewrite_entity(child, 'dev~lovely-dev', 'dev')
    others = [p.value.referencevalue for p in moved.property
              if p.name == 'others']
    assert [(r.app, r.name_space) for r in others] == [
        ('s~someone-else', ''), ('dev~lovely-dev', 'dev')]


def test_verify_and_upload_agree_on_every_byte_of_a_damaged_file(
        gae_testbed, tmp_path):
    from google.appengine.api import datastore, datastore_types, users
    parent = datastore.Entity('P', name='p')
    parent.update({'s': 'ä', 't': datastore_types.Text('tx'),
                   'b': datastore_types.Blob(b'\xff'),
                   'r': db.Key.from_path('P', 'q'),
                   'g': datastore_types.GeoPt(1, 2),
                   'u': users.User('a@b.c', _auth_domain='x'), 'l': [1, 'z'],
                   'bs': datastore_types.ByteString(b'\x80'),
                   'k': datastore_types.Link('http://h')})
    child = datastore.Entity('C', id=7, namespace='n')
    child['x'] = 'y'
    records = [e.ToPb().SerializeToString() for e in (parent, child)]
    path = tmp_path / 'file'
    with open(path, 'wb') as out:
        writer = devfile.DevFileWriter(out)
        writer.add_many(records)
        writer.close()
    good = path.read_bytes()
    stub = gae_testbed.get_stub('datastore_v3')
    stored = stub._DatastoreFileStub__entities_by_kind
    verdicts = set()
    for position in range(len(good)):
        for mask in (0x01, 0x80, 0xFF):
            damaged = bytearray(good)
            damaged[position] ^= mask
            path.write_bytes(damaged)
            stub.Clear()
            try:
                devfile.check_file(str(path))
                verified = True
            except ValueError:
                verified = False
            try:
                client.upload_snapshot(str(path))
                uploaded = True
            except ValueError:  # BadEntity, or no datastore file
                uploaded = False
                assert not any(stored.values()), (position, mask)
            assert verified == uploaded, (position, mask)
            verdicts.add(verified)
    assert verdicts == {True, False}


class Target(ndb.Model):
    label = ndb.StringProperty()


class Inner(ndb.Model):
    ref = ndb.KeyProperty()
    refs = ndb.KeyProperty(repeated=True)


class Middle(ndb.Model):
    inner = ndb.LocalStructuredProperty(Inner)


class Outer(ndb.Model):
    one = ndb.LocalStructuredProperty(Inner)
    many = ndb.LocalStructuredProperty(Inner, repeated=True)
    nested = ndb.LocalStructuredProperty(Middle)
    kept = ndb.LocalStructuredProperty(Inner, keep_keys=True)
    packed = ndb.LocalStructuredProperty(Inner, compressed=True)


def test_keys_inside_structured_values_load_under_the_target_app(
        gae_testbed, finished_snapshot, tmp_path):
    target = Target(id='t', label='found').put()
    Outer(one=Inner(ref=target), many=[Inner(), Inner(refs=[target] * 2)],
          nested=Middle(inner=Inner(ref=target)),
          kept=Inner(key=ndb.Key('Inner', 5), ref=target),
          packed=Inner(ref=target)).put()
    snap = finished_snapshot(['Outer', 'Target'])
    path = client.download_snapshot(str(tmp_path), snap.id, progress=quiet,
                                    target_app_id='dev~lovely-dev')
    ndb.get_context().clear_cache()
    bed = sdk_file_testbed('dev~lovely-dev', path, save_changes=False)
    try:
        outer = Outer.query().get()
        found = [outer.one.ref.get(), outer.nested.inner.ref.get(),
                 outer.kept.ref.get()] + ndb.get_multi(outer.many[1].refs)
        assert [t.label for t in found] == ['found'] * 5
        assert outer.kept.key == ndb.Key('Inner', 5, app='dev~lovely-dev')
        # Compressed bytes are not rewritten (docs/http.rst says so).
        assert outer.packed.ref.app() == 'lovely-gae-testing'
    finally:
        bed.deactivate()
        ndb.get_context().clear_cache()


def test_structured_values_keep_their_bytes_unless_a_key_moves(gae_testbed):
    from lovely_gae.snapshot.transfer.rewrite import rewrite_entity
    theirs = ndb.Key('Target', 't', app='s~someone-else')
    key = Outer(one=Inner(ref=theirs), nested=Middle(inner=Inner())).put()
    [stored] = entities.get([key.to_old_key()._ToPb()])
    record = stored.SerializeToString()
    moved = rewrite_entity(entities.EntityProto.FromString(record),
                           'dev~lovely-dev')
    assert moved.key.app == 'dev~lovely-dev'
    assert list(moved.raw_property) == list(stored.raw_property)
    same = rewrite_entity(entities.EntityProto.FromString(record),
                          stored.key.app)
    assert same.SerializeToString() == record


def test_structured_values_nested_too_deep_are_refused(gae_testbed):
    from lovely_gae.exceptions import BadEntity
    from lovely_gae.snapshot.transfer import rewrite
    value = b''
    for _ in range(rewrite.MAX_DEPTH + 1):
        inner = entities.EntityProto()
        prop = inner.raw_property.add(name='x', multiple=False,
                                      meaning=rewrite.Property.ENTITY_PROTO)
        prop.value.stringValue = value
        value = inner.SerializePartialToString()
    key = Outer().put()
    [entity] = entities.get([key.to_old_key()._ToPb()])
    entity.raw_property.add().MergeFromString(
        entities.EntityProto.FromString(value).raw_property[0]
        .SerializeToString())
    with pytest.raises(BadEntity, match='nested deeper than 100'):
        rewrite.rewrite_entity(entity, 'dev~lovely-dev')


@pytest.mark.parametrize('opcode, length', [
    (b'B', struct.pack('<I', 2 ** 31)), (b'\x8e', struct.pack('<Q', 2 ** 62))])
def test_a_file_claiming_a_huge_record_is_refused_before_reading_it(
        tmp_path, opcode, length):
    path = tmp_path / 'huge'
    path.write_bytes(b'\x80\x03](' + opcode + length + b'x' * 10)
    with open(path, 'rb') as fileobj:
        with pytest.raises(ValueError, match='more than an entity takes'):
            list(devfile.iter_entities(fileobj))
