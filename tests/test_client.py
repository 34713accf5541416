import os

import pytest
from google.appengine.api.datastore_file_stub import DatastoreFileStub

from lovely_gae import entities
from lovely_gae.exceptions import (OutFileExists, SnapshotNotFinished,
                                   SnapshotNotFound)
from lovely_gae.snapshot import api, client, devfile
from tests.conftest import Dummy, Yummy


def quiet(event, **info):
    pass


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
