"""Every value the datastore holds comes back byte for byte."""
import datetime
import string

from google.appengine.api import datastore, datastore_types, users
from google.appengine.ext import db
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lovely_gae import async_, entities, testing
from lovely_gae.snapshot import api
from tests.conftest import all_bytes


def every_value_type():
    key = db.Key.from_path('Parent', 'p', 'Child', 7)
    return {
        'text': 'Grüße, 世界 ✓',
        'int_max': 2 ** 63 - 1,
        'int_min': -2 ** 63,
        'float': 1.5e-300,
        'float_negative_zero': -0.0,
        'true': True,
        'none': None,
        'when': datetime.datetime(1999, 12, 31, 23, 59, 59, 999999),
        'mixed': [1, 'two', 3.0, None, True, key],
        'key': key,
        'geo': datastore_types.GeoPt(52.52, 13.405),
        'blob': datastore_types.Blob(b'\x00\xff' * 100),
        'long_text': datastore_types.Text('x' * 5000),
        'bytes': datastore_types.ByteString(b'\x01\x02'),
        'email': datastore_types.Email('a@example.com'),
        'link': datastore_types.Link('https://example.com/ä'),
        'category': datastore_types.Category('news'),
        'phone': datastore_types.PhoneNumber('+49 30 123'),
        'address': datastore_types.PostalAddress('Unter den Linden 1'),
        'rating': datastore_types.Rating(97),
        'im': datastore_types.IM('xmpp', 'user@example.com'),
        'user': users.User('someone@example.com', _auth_domain='gmail.com'),
        'empty_list': [],
    }


def test_every_value_type_key_shape_and_unindexed_property(
        gae_testbed, run_tasks):
    parent = datastore.Entity('Parent', name='p')
    child = datastore.Entity('Child', parent=parent.key(), id=7)
    named = datastore.Entity('Child', name='ключ', parent=parent.key(),
                             unindexed_properties=['text', 'float'])
    auto = datastore.Entity('Child')
    for entity in (child, named, auto):
        entity.update(every_value_type())
    datastore.Put([parent, child, named, auto])
    kinds = ['Child', 'Parent']
    before = all_bytes(kinds)
    snap = api.create_snapshot(kinds)
    run_tasks(recursive=True)
    datastore.Delete([child.key(), parent.key()])
    changed = datastore.Get(named.key())
    changed['int_max'] = 0
    datastore.Put(changed)
    api.get_snapshot(snap.id).restore()
    run_tasks(recursive=True)
    assert all_bytes(kinds) == before


names = st.text(string.ascii_letters + 'äß_', min_size=1, max_size=8).filter(
    lambda name: not name.startswith('__'))  # reserved by the datastore
values = st.one_of(
    st.none(), st.booleans(), st.integers(-2 ** 63, 2 ** 63 - 1),
    st.floats(allow_nan=False), st.text(max_size=30),
    st.binary(max_size=30).map(datastore_types.ByteString),
    st.datetimes(min_value=datetime.datetime(1970, 1, 1)),
)
properties = st.dictionaries(names, st.one_of(values, st.lists(values,
                                                                max_size=3)),
                             max_size=4)
entity_specs = st.lists(st.tuples(
    st.sampled_from(['Ant', 'Bee', 'Cat']),
    st.one_of(st.integers(1, 10 ** 6), names),
    st.booleans(),  # has a parent
    properties), min_size=1, max_size=25,
    unique_by=lambda spec: (spec[0], spec[1], spec[2]))


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entity_specs, st.data())
def test_random_entities_survive_damage_and_restore(specs, data):
    bed = testing.start_testbed()
    try:
        root = datastore.Entity('Root', name='root')
        made = [root]
        for kind, id_or_name, has_parent, props in specs:
            keyword = 'id' if isinstance(id_or_name, int) else 'name'
            entity = datastore.Entity(
                kind, parent=root.key() if has_parent else None,
                **{keyword: id_or_name})
            entity.update(props)
            made.append(entity)
        datastore.Put(made)
        kinds = sorted({spec[0] for spec in specs} | {'Root'})
        before = all_bytes(kinds)
        api.create_snapshot(kinds, batchsize=data.draw(st.integers(1, 7)))
        async_.run_tasks(recursive=True)
        snap = api.latest_snapshot()

        victims = data.draw(st.lists(st.sampled_from(made), max_size=5))
        datastore.Delete(list({e.key() for e in victims}))
        for entity in data.draw(st.lists(st.sampled_from(made[1:]),
                                         max_size=3)):
            entity['damage'] = 1
            datastore.Put(entity)
        added = data.draw(st.lists(st.sampled_from(kinds), max_size=3))
        for number, kind in enumerate(added):
            # Named: the stub's auto ids may collide with the drawn ids.
            datastore.Put(datastore.Entity(kind, name='added-%d' % number))

        snap.restore()
        async_.run_tasks(recursive=True)
        assert all_bytes(kinds) == before
        assert entities.kinds('') == kinds
    finally:
        bed.deactivate()
