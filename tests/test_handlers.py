import pytest
from webtest import TestApp

from lovely_gae import async_
from lovely_gae.snapshot import getApp
from lovely_gae.snapshot.models import Snapshot
from tests.conftest import Dummy

CREATE = '/lovely.gae/snapshot.CreateSnapshotHandler'


@pytest.fixture
def app(gae_testbed, monkeypatch):
    monkeypatch.delenv('LOVELY_GAE_TOKEN', raising=False)
    monkeypatch.delenv('GAE_ENV', raising=False)
    return TestApp(getApp())


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
    res = app.get(CREATE + '?' + query, status=400)
    assert res.text.startswith(reason)
    assert res.text.count('\n') == 1
    assert Snapshot.all().count() == 0
    assert async_.get_tasks() == []


def test_other_methods_and_paths_are_refused(app):
    app.put(CREATE, status=405)
    assert app.get('/lovely.gae/nothing', status=404).text.startswith(
        'no such page')
    assert Snapshot.all().count() == 0
