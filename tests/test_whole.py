"""Over HTTP too, a snapshot is used whole or not at all, one restore a kind."""
import pytest
from google.appengine.ext import db
from webtest import TestApp

from lovely_gae import async_
from lovely_gae.snapshot import getApp
from lovely_gae.snapshot.restores import Restore
from tests.conftest import Dummy

SNAPSHOTS = '/lovely.gae/snapshots'


@pytest.fixture
def app(gae_testbed):
    return TestApp(getApp())


@pytest.fixture
def missing_range(make_entities, finished_snapshot):
    """A finished snapshot of 3 ranges whose second range backup is gone."""
    make_entities(Dummy, 30)
    snap = finished_snapshot(['Dummy'], batchsize=10)
    db.delete(snap.range_backups()[1])
    return snap


def test_the_manifest_of_a_snapshot_missing_a_range_is_refused(
        app, missing_range):
    res = app.get('%s/%d/manifest' % (SNAPSHOTS, missing_range.id),
                  status=409)
    assert res.text == ("snapshot %d is incomplete: kind 'Dummy' lacks 1 of "
                        "its 3 ranges (positions 1)\n" % missing_range.id)


def test_a_restore_of_a_snapshot_missing_a_range_is_refused(
        app, missing_range):
    res = app.post('%s/%d/restore' % (SNAPSHOTS, missing_range.id),
                   status=409)
    assert "kind 'Dummy' lacks 1 of its 3 ranges (positions 1)" in res.text
    assert Restore.all().count() == 0
    assert async_.get_tasks() == []
    info = app.get('%s/%d' % (SNAPSHOTS, missing_range.id)).json
    assert info['restore'] is None  # nothing shows as running


def test_a_second_restore_of_a_kind_is_a_conflict(app, make_entities,
                                                  finished_snapshot):
    make_entities(Dummy, 3)
    snap = finished_snapshot(['Dummy'])
    app.post('%s/%d/restore' % (SNAPSHOTS, snap.id), status=202)
    res = app.post('%s/%d/restore' % (SNAPSHOTS, snap.id), status=409)
    assert res.text.startswith("kind 'Dummy' of namespace '' is being "
                               "restored from snapshot %d" % snap.id)
