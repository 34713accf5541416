"""The manifest comes in pages: none grows with the snapshot, on the app or
in the client, and the pages of a download add up to the whole snapshot."""
import hashlib
import json
import os
import tracemalloc
from urllib.parse import unquote

import pytest
from google.appengine.ext import db
from webtest import TestApp

from lovely_gae.exceptions import BadManifest, SnapshotIncomplete
from lovely_gae.snapshot import client, getApp, storage
from lovely_gae.snapshot.app import data as transfer
from lovely_gae.snapshot.client import quiet
from lovely_gae.snapshot.models import SHARD_STRIDE, RangeBackup
from lovely_gae.snapshot.transfer.remote import RemoteClient
from tests.conftest import Dummy, Yummy
from tests import test_transfer_trust
from tests.test_transfer_trust import SNAPSHOT_ID, download, pages_of, record

SNAPSHOTS = '/lovely.gae/snapshots'
PAGE = 7

# Fixtures of other modules that tests here use too.
hostile = test_transfer_trust.hostile


@pytest.fixture
def app(gae_testbed):
    return TestApp(getApp())


@pytest.fixture
def paged(make_entities, finished_snapshot, sharded, monkeypatch):
    """A finished snapshot of a kind cut into 4 shards and a small kind
    beside it, in pages of ``PAGE`` ranges."""
    monkeypatch.setattr(transfer, 'MANIFEST_PAGE', PAGE)
    make_entities(Dummy, 200)
    make_entities(Yummy, 25)
    snap = finished_snapshot(['Yummy', 'Dummy'], batchsize=10)
    assert len(snap.spans('Dummy')) == 4
    assert snap.ranges_total() > 3 * PAGE
    return snap


def pages(app, snap):
    """Every page of the snapshot's manifest, following ``next``."""
    found, after = [], None
    while True:
        query = '' if after is None else '?after=' + after
        found.append(app.get('%s/%d/manifest%s' % (SNAPSHOTS, snap.id,
                                                    query)).json)
        after = found[-1]['next']
        if after is None:
            return found


def test_the_pages_list_every_range_once_in_the_order_of_their_keys(
        app, paged):
    found = pages(app, paged)
    backups = paged.range_backups()  # in key order: kinds by name
    assert backups[0].range_kind == 'Dummy'
    assert len(found) == -(-len(backups) // PAGE)
    assert all(len(page['ranges']) == PAGE for page in found[:-1])
    assert [entry['name'] for page in found for entry in page['ranges']] \
        == [backup.name for backup in backups]
    assert all(page['snapshot'] == found[0]['snapshot'] for page in found)
    positions = [entry['position'] for page in found
                 for entry in page['ranges'] if entry['kind'] == 'Dummy']
    assert positions[-1] >= 3 * SHARD_STRIDE  # spans, not 0 .. n - 1


def test_a_page_lists_only_its_own_window_and_names_a_range_missing_there(
        app, paged):
    backups = paged.range_backups()
    gone = backups[2 * PAGE + 1]
    db.delete(gone)
    url = '%s/%d/manifest' % (SNAPSHOTS, paged.id)
    after = None
    for _ in range(2):  # the pages before it are whole
        after = app.get(url, {'after': after} if after else {}).json['next']
    res = app.get(url, {'after': after}, status=409)
    assert res.text.startswith("snapshot %d is incomplete: kind 'Dummy' "
                               "lacks " % paged.id)
    assert str(gone.position) in res.text and res.text.count('\n') == 1


def test_a_page_reads_a_bounded_number_of_range_backups(
        app, paged, datastore_calls):
    datastore_calls.clear()
    app.get('%s/%d/manifest' % (SNAPSHOTS, paged.id))
    assert datastore_calls.count('Get') <= 4  # not one a range
    # The whole snapshot's keys would take a query batch after another.
    assert datastore_calls.count('RunQuery') <= 3


@pytest.mark.parametrize('cursor, problem', [
    ('', 'no cursor of a manifest'),
    ('x', 'no cursor of a manifest'),
    ('%(id)d.0.-1', 'no cursor of a manifest'),
    ('%(id)d.0.\u0663', 'no cursor of a manifest'),
    ('%(id)d.0.1 ', 'no cursor of a manifest'),
    ('%(id)d.0.' + '0' * 60 + '1', 'no cursor of a manifest'),
    ('%(id)d.0.' + '9' * 20, 'no cursor of a manifest'),
    ('%(other)d.0.1', 'a cursor of another snapshot'),
    ('%(id)d.2.0', 'past the ranges of snapshot %(id)d'),
    ('%(id)d.0.%(gap)d', 'past the ranges of snapshot %(id)d'),
    ('%(id)d.1.3', 'past the ranges of snapshot %(id)d'),
])
def test_a_tampered_cursor_is_a_400_of_one_line(app, paged, cursor,
                                                problem):
    values = {'id': paged.id, 'other': paged.id + 1,
              'gap': paged.spans('Dummy')[0][1]}
    cursor = cursor % values
    res = app.get('%s/%d/manifest' % (SNAPSHOTS, paged.id),
                  {'after': cursor}, status=400)
    assert res.text == 'invalid after %r: %s\n' % (cursor[:64],
                                                  problem % values)


def test_a_cursor_of_one_snapshot_is_refused_on_another(
        app, paged, finished_snapshot):
    other = finished_snapshot(['Dummy'], batchsize=10)  # its shards too
    cursor = pages(app, paged)[0]['next']
    res = app.get('%s/%d/manifest' % (SNAPSHOTS, other.id),
                  {'after': cursor}, status=400)
    assert res.text == 'invalid after %r: a cursor of another snapshot\n' % (
        cursor)


def test_a_cursor_given_twice_or_not_in_utf8_is_a_400(app, paged):
    cursor = pages(app, paged)[0]['next']
    url = '%s/%d/manifest?after=%s' % (SNAPSHOTS, paged.id, cursor)
    res = app.get(url + '&after=' + cursor, status=400)
    assert res.text.endswith('send one cursor\n')
    res = app.get(url[:-1] + '%ff', status=400)
    assert res.text == 'invalid after: the query is not UTF-8\n'


def test_a_paged_http_download_is_byte_for_byte_the_local_one(
        paged, snapshot_server, tmp_path):
    remote = RemoteClient(snapshot_server.url, snapshot_server.token)
    asked = []
    fetch = remote.manifest

    def manifest(snapshot_id, after=None):
        asked.append(after)
        return fetch(snapshot_id, after)
    remote.manifest = manifest
    events = []
    (tmp_path / 'http').mkdir()
    over_http = client.download_snapshot(
        str(tmp_path / 'http'), url=remote,
        progress=lambda event, **info: events.append((event, info)))
    local = client.download_snapshot(str(tmp_path), paged.id,
                                     progress=quiet)
    with open(over_http, 'rb') as one, open(local, 'rb') as other:
        assert one.read() == other.read()
    assert len(asked) == -(-paged.ranges_total() // PAGE) and asked[0] is None
    assert events[0] == ('start', {'snapshot_id': paged.id,
                                   'ranges': paged.ranges_total(),
                                   'bytes': paged.stored_bytes})
    assert paged.stored_bytes == sum(b.size for b in paged.range_backups())
    assert [info['position'] for event, info in events
            if event == 'range'] == list(range(1, paged.ranges_total() + 1))
    assert os.listdir(tmp_path / 'http') == [os.path.basename(over_http)]


# A hostile app's later pages: each checked before its ranges are fetched.

def swap(page):
    page['ranges'].reverse()


@pytest.mark.parametrize('spoil, error, reason', [
    (lambda p: p['ranges'][0].update(path='/x'), BadManifest,
     "range 2: path '/x' is not the snapshot's own"),
    (lambda p: p['snapshot']['range_spans'].update(Dummy=[[0, 7]]),
     BadManifest, 'page 2 is of a snapshot of other kinds, spans or '
                  'entities'),
    (lambda p: p['snapshot'].update(id=8), BadManifest,
     'it is the manifest of snapshot 8'),
    (lambda p: p.update(next='x\n'), BadManifest,
     "page 2: next is 'x\\n', not a cursor"),
    (lambda p: p.update(ranges=[]), BadManifest,
     'page 2 lists no ranges, yet another follows'),
    (lambda p: p['ranges'].__setitem__(1, dict(p['ranges'][1], position=4)),
     BadManifest, 'range 3: its name is not'),
    (lambda p: p.update(next=None), SnapshotIncomplete,
     "kind 'Dummy' lacks 2 of its ranges 2 to 5 (positions 4, 5)"),
    (swap, SnapshotIncomplete, 'the ranges of page 2 are out of order'),
    (lambda p: p['ranges'].insert(0, p['ranges'][0]), SnapshotIncomplete,
     "kind 'Dummy' has 3 ranges, it recorded 2"),
])
def test_a_bad_later_page_is_refused_before_its_ranges_are_fetched(
        hostile, tmp_path, spoil, error, reason):
    manifest = hostile.serve_snapshot([[record(name)] for name in 'abcdef'])
    pages = pages_of(manifest, 2)
    pages[1] = json.loads(json.dumps(pages[1]))
    spoil(pages[1])
    hostile.serve_pages(pages)
    with pytest.raises(error) as info:
        download(hostile.url, tmp_path)
    assert info.value.reason.startswith(reason)
    assert '\n' not in str(info.value)
    assert hostile.range_requests() == [
        unquote(entry['path']) for entry in manifest['ranges'][:2]]
    assert os.listdir(tmp_path) == ['.snapshot.%d.partial' % SNAPSHOT_ID]


def test_pages_that_hold_fewer_entities_than_recorded_are_refused_at_last(
        hostile, tmp_path):
    manifest = hostile.serve_snapshot([[record(name)] for name in 'abc'])
    manifest['snapshot']['progress']['entities'] = 4
    hostile.serve_manifest(manifest, 1)
    with pytest.raises(SnapshotIncomplete) as info:
        download(hostile.url, tmp_path)
    assert info.value.reason == 'its ranges hold 3 entities, it recorded 4'
    assert len(hostile.manifest_requests()) == 3
    assert len(hostile.range_requests()) == 2  # not the last page's
    assert os.listdir(tmp_path) == ['.snapshot.%d.partial' % SNAPSHOT_ID]


def test_a_page_that_comes_again_is_refused(hostile, tmp_path):
    manifest = hostile.serve_snapshot([[record(name)] for name in 'abc'])
    pages = pages_of(manifest, 1)
    # Page 1 again, and again, for ever if it were followed.
    hostile.serve_pages([pages[0], dict(pages[0], next='p1')])
    with pytest.raises(SnapshotIncomplete) as info:
        download(hostile.url, tmp_path)
    assert info.value.reason == ("range 1 (kind 'Dummy', position 0) is one "
                                 "of an earlier page")
    assert len(hostile.manifest_requests()) == 2
    assert os.listdir(tmp_path) == ['.snapshot.%d.partial' % SNAPSHOT_ID]


class Generated(RemoteClient):
    """An app whose snapshot has ``count`` empty ranges in two spans, its
    manifest made up a page at a time as it is asked for."""

    def __init__(self, count, empty):
        super().__init__('http://127.0.0.1:9', 's3cret')  # never called
        self.count, self.empty, self.pages = count, empty, 0
        half = count // 2
        self.spans = [[0, half], [SHARD_STRIDE, count - half]]
        self.snapshot = {
            'id': 7, 'status': 'finished', 'kinds': ['Dummy'],
            'namespace': '', 'range_spans': {'Dummy': self.spans},
            'progress': {'entities': 0, 'bytes': 0}}

    def manifest(self, snapshot_id='latest', after=None):
        self.pages += 1
        start = int(after or 0)
        stop = min(start + transfer.MANIFEST_PAGE, self.count)
        positions = [index if index < self.spans[0][1] else
                     SHARD_STRIDE + index - self.spans[0][1]
                     for index in range(start, stop)]
        return {'snapshot': dict(self.snapshot),
                'ranges': [self.entry(p) for p in positions],
                'next': str(stop) if stop < self.count else None}

    def entry(self, position):
        name = RangeBackup.make_name(7, 'Dummy', position, 0)
        return {'name': name, 'kind': 'Dummy', 'position': position,
                'count': 0, 'raw_size': 0, 'size': 0,
                'sha256': hashlib.sha256(b'').hexdigest(), 'codec': 'none',
                'format': storage.FORMAT,
                'path': transfer.range_path(7, name)}

    def fetch_range(self, snapshot_id, entry, path, progress=None):
        return self.empty  # each range holds nothing: no file a range


def test_memory_of_a_download_of_many_pages_is_that_of_a_page(
        gae_testbed, tmp_path):
    empty = tmp_path / 'empty'
    empty.write_bytes(b'')
    out = tmp_path / 'out'
    out.mkdir()
    remote = Generated(20000, str(empty))
    tracemalloc.start()
    try:
        path = client.download_snapshot(str(out), url=remote,
                                        progress=quiet)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert remote.pages == 200
    assert os.path.getsize(path) > 0
    # All 20000 entries at once would take over 20 MB.
    assert peak < 6 << 20
