"""Reading snapshots over HTTP: the listing, a page at a time by its
cursor, one snapshot shown as JSON, and unknown ones."""
import pytest
from google.appengine.ext import db

from lovely_gae.snapshot.models import Snapshot
from tests.conftest import SNAPSHOTS, Dummy


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


def test_a_page_of_the_listing_is_not_a_call_a_snapshot(app, monkeypatch):
    """A page holds up to 1,000 snapshots; the latest restore and dry run
    each shows are read for the whole page in one ``db.get`` (the SDK
    sends its keys at once, ten entity groups an RPC), not a round trip a
    snapshot: at tens of ms each, a page of 1,000 took most of a minute."""
    first, _ = db.allocate_ids(Snapshot.key_for(1), 200)
    db.put([Snapshot(key=Snapshot.key_for(first + i), kinds=['Dummy'],
                     namespace='', batchsize=10, codec='bz2',
                     status='finished', restore_id='%032x' % i,
                     plan_id='%032x' % (1000 + i),
                     range_counts={'Dummy': [1]},
                     kind_entities={'Dummy': 1}) for i in range(200)])
    gets, real = [], db.get

    def get(keys, **kwargs):
        gets.append(keys)
        return real(keys, **kwargs)
    monkeypatch.setattr(db, 'get', get)
    page = app.get(SNAPSHOTS, {'limit': '1000'}).json
    assert len(page['snapshots']) == 200
    assert len(gets) <= 2, len(gets)
