"""A range's bytes hold up: no truncation, parts, every codec, the 1 MiB
request limits, and memory bounded by a part."""
import os
import tracemalloc

import pytest
from google.appengine.ext import db

from lovely_gae import defaults, entities
from lovely_gae.snapshot import api, client, storage
from lovely_gae.snapshot.transfer import devfile
from lovely_gae.snapshot.models import RangeBackupPart
from tests.conftest import Dummy, all_bytes


class Heavy(db.Model):
    payload = db.BlobProperty()


def _peak_bytes(func):
    """Peak memory of ``func`` beyond what it leaves allocated at its end.

    What is still allocated at the end is what the in-memory datastore stub
    now holds (the stored range, the restored entities): the datastore's
    memory, not the worker's.
    """
    tracemalloc.start()
    try:
        func()
        retained, peak = tracemalloc.get_traced_memory()
        return peak - retained
    finally:
        tracemalloc.stop()


def test_range_of_2500_entities_round_trips_exactly(make_entities,
                                                    finished_snapshot,
                                                    run_tasks, unsharded):
    keys = make_entities(Dummy, 2500)
    before = all_bytes(['Dummy'])
    snap = finished_snapshot(['Dummy'], batchsize=5000)
    [backup] = snap.range_backups()
    assert backup.count == 2500
    db.delete(keys[:1500])
    added = make_entities(Dummy, 2500)  # restore must find and delete all
    snap.restore()
    run_tasks(recursive=True)
    assert all_bytes(['Dummy']) == before
    assert db.get(added[-1]) is None


def test_incompressible_6_mb_are_stored_in_parts_and_come_back_exactly(
        gae_testbed, finished_snapshot, run_tasks, tmp_path):
    db.put([Heavy(payload=os.urandom(40 * 1000)) for _ in range(150)])
    before = all_bytes(['Heavy'])
    snap = finished_snapshot(['Heavy'])
    [backup] = snap.range_backups()
    assert backup.size > 6 * 1000 * 1000
    assert backup.parts == -(-backup.size // defaults.PART_SIZE)
    parts = list(backup.iter_parts())
    assert all(len(p) <= defaults.PART_SIZE for p in parts)
    assert RangeBackupPart.all().count() == backup.parts - 1

    db.delete(list(Heavy.all(keys_only=True)))
    snap.restore()
    run_tasks(recursive=True)
    assert all_bytes(['Heavy']) == before

    path = client.download_snapshot(str(tmp_path), snap.id,
                                    progress=lambda event, **info: None)
    with open(path, 'rb') as f:
        assert sorted(devfile.iter_entities(f)) == before


@pytest.mark.parametrize('codec', ['zlib', 'none'])
def test_memory_while_storing_and_restoring_is_bounded_by_a_part(
        gae_testbed, run_tasks, monkeypatch, codec):
    # bz2's own state is a fixed 7.5 MB at level 9, whatever the range
    # size; the codecs here keep the measurement about our buffers.
    monkeypatch.setattr(defaults, 'PART_SIZE', 256 * 1024)
    # Query batches keep their default size: a batch of whole entities
    # must shrink to fit, as 300 of these would hold 6 MB.
    entity_size = 20 * 1000
    db.put([Heavy(payload=os.urandom(entity_size)) for _ in range(400)])
    range_bytes = 400 * entity_size
    allowance = 6 * defaults.PART_SIZE + 3 * 20 * entity_size
    assert allowance < range_bytes / 2
    snap = api.create_snapshot(['Heavy'], batchsize=1000, codec=codec)
    # The pass (keys only), its callback, the range's task (it reads it).
    for _ in range(3):
        assert _peak_bytes(run_tasks) < allowance
    assert api.get_snapshot(snap.id).status == 'finished'
    db.delete(list(Heavy.all(keys_only=True)))
    snap.restore()
    assert _peak_bytes(lambda: run_tasks(recursive=True)) < allowance
    assert Heavy.all().count() == 400


def test_puts_and_deletes_respect_the_request_limit(gae_testbed):
    big = [Heavy(payload=b'x' * 600 * 1000) for _ in range(6)]
    db.put(big)
    pbs = list(entities.iter_range('Heavy', ''))
    entities.delete([p.key for p in pbs])
    entities.put(pbs)  # one call, several requests of at most 1 MiB
    assert Heavy.all().count() == 6


def test_a_restore_puts_large_entities_in_requests_of_at_most_1_mib(
        gae_testbed, finished_snapshot, run_tasks, monkeypatch):
    db.put([Heavy(payload=os.urandom(300 * 1000)) for _ in range(7)])
    before = all_bytes(['Heavy'])
    snap = finished_snapshot(['Heavy'])
    db.delete(list(Heavy.all(keys_only=True)))
    requests = []
    send_put = entities.SentPut

    def spy(records):
        requests.append(sum(len(r) + 4 for r in records))
        return send_put(records)
    monkeypatch.setattr(entities, 'SentPut', spy)
    snap.restore()
    run_tasks(recursive=True)
    assert all_bytes(['Heavy']) == before
    assert len(requests) == 3
    assert max(requests) <= 1024 * 1024


@pytest.mark.parametrize('codec', ['bz2', 'zlib', 'lzma', 'none'])
def test_every_codec_round_trips(make_entities, finished_snapshot, run_tasks,
                                 codec):
    keys = make_entities(Dummy, 40)
    before = all_bytes(['Dummy'])
    snap = finished_snapshot(['Dummy'], batchsize=15, codec=codec)
    assert {rb.codec for rb in snap.range_backups()} == {codec}
    db.delete(keys[::2])
    snap.restore()
    run_tasks(recursive=True)
    assert all_bytes(['Dummy']) == before


@pytest.mark.parametrize('codec', ['none', 'zlib', 'bz2'])
def test_records_of_every_length_come_back_across_part_boundaries(
        codec, monkeypatch):
    # Lengths whose varints take one, two and three bytes, and empty ones.
    records = [os.urandom(n) for n in (0, 1, 127, 128, 300, 16383, 16384,
                                       70000, 5, 0, 129)]
    monkeypatch.setattr(defaults, 'PART_SIZE', 37)
    writer = storage.RangeWriter(codec)
    parts = list(writer.add_all(records)) + writer.close()
    assert len(parts) > 5
    assert list(storage.iter_records(parts, codec)) == records
    with pytest.raises(ValueError):
        list(storage.iter_records(parts[:-1], codec))
