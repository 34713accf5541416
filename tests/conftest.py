"""Fixtures shared by the test modules."""
import pytest
from google.appengine.ext import db

from lovely_gae.snapshot import api


class Dummy(db.Model):
    title = db.StringProperty()


class Yummy(db.Model):
    title = db.StringProperty()


@pytest.fixture
def make_entities(gae_testbed):
    """``make_entities(model, n)``: put n entities titled 0..n-1."""
    def make(model, count, **values):
        entities = [model(title=str(i), **values) for i in range(count)]
        return db.put(entities)
    return make


@pytest.fixture
def finished_snapshot(gae_testbed, run_tasks):
    """``finished_snapshot(kinds=None, **kw)``: a snapshot, all tasks run."""
    def make(kinds=None, **kwargs):
        snap = api.create_snapshot(kinds, **kwargs)
        run_tasks(recursive=True)
        snap = api.get_snapshot(snap.id)
        assert snap.status == snap.STATUS_FINISHED, snap.error
        return snap
    return make
