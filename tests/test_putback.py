"""A writing task puts its ranges back while it looks for stale entities."""
import pytest
from google.appengine.ext import db

from lovely_gae import entities
from lovely_gae.snapshot import api
from lovely_gae.snapshot.work import putback, waves
from tests.conftest import Dummy, all_bytes


@pytest.fixture
def one_writer(monkeypatch, unsharded):
    """A large restore whose ranges one writing task puts back."""
    monkeypatch.setattr(waves, 'INLINE_RANGES', 1)
    monkeypatch.setattr(waves, 'WRITE_RANGES', 10)


@pytest.fixture
def events(monkeypatch):
    """What the datastore was asked, in order: puts of ranges sent, stale
    keys read, deletes, with how many entities."""
    seen = []
    send_put, read_range, send_delete = (
        entities.SentPut, entities.read_range, entities.SentDelete)

    def sent_put(records):
        if entities.EntityProto.FromString(records[0]).key.path.element[
                -1].type == 'Dummy':  # not the library's own
            seen.append(('put', len(records)))
        return send_put(records)

    def read(sent):
        for found in read_range(sent):
            if getattr(found, 'path', None) is not None:  # a stale scan's
                seen.append(('read', found.path.element[-1].id))
            yield found

    def sent_delete(references):
        if references[0].path.element[-1].type == 'Dummy':
            seen.append(('delete', [reference.path.element[-1].id
                                    for reference in references]))
        return send_delete(references)
    monkeypatch.setattr(entities, 'SentPut', sent_put)
    monkeypatch.setattr(entities, 'read_range', read)
    monkeypatch.setattr(entities, 'SentDelete', sent_delete)
    return seen


def test_every_range_is_on_its_way_before_stale_entities_are_read(
        make_entities, finished_snapshot, run_tasks, one_writer, events):
    keys = make_entities(Dummy, 40)
    before = all_bytes(['Dummy'])
    snap = finished_snapshot(['Dummy'], batchsize=10)
    db.delete(keys[::3])
    snap.restore()
    del events[:]
    run_tasks(recursive=True)
    assert all_bytes(['Dummy']) == before
    names = [name for name, _ in events]
    assert names.count('put') == 4
    assert names.index('read') > max(index for index, name in
                                      enumerate(names) if name == 'put')


def test_stale_entities_go_a_request_at_a_time_as_they_are_found(
        make_entities, finished_snapshot, run_tasks, one_writer, events,
        monkeypatch):
    make_entities(Dummy, 20)
    before = all_bytes(['Dummy'])
    snap = finished_snapshot(['Dummy'], batchsize=10)
    make_entities(Dummy, 7)  # written since: stale, in the last range
    monkeypatch.setattr(putback, '_DELETE_KEYS', 3)
    snap.restore()
    del events[:]
    run_tasks(recursive=True)
    assert all_bytes(['Dummy']) == before
    deletes = [found for name, found in events if name == 'delete']
    assert [len(found) for found in deletes] == [3, 3, 1]
    # The first request went before the last stale key was read.
    names = [name for name, _ in events]
    assert names.index('delete') < len(names) - 1 - names[::-1].index('read')
    assert api.get_snapshot(snap.id).restore_progress()['deleted'] == 7
