import string

import pytest
from google.appengine.api import datastore, datastore_errors
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lovely_gae import entities, testing

kinds = st.sampled_from(['A', 'B', 'a', 'Ä', 'AB'])
ids_or_names = st.one_of(
    st.integers(1, 2 ** 63 - 1),
    st.text(string.ascii_letters + string.digits + 'é€', min_size=1,
            max_size=6).filter(lambda name: not name.startswith('__')))
paths = st.lists(st.tuples(kinds, ids_or_names), min_size=1, max_size=3)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(paths, min_size=1, max_size=30))
def test_sort_key_orders_keys_as_the_datastore_does(path_lists):
    bed = testing.start_testbed()
    try:
        made = {}
        for path in path_lists:
            parent = None
            for kind, id_or_name in path[:-1]:
                parent = datastore.Key.from_path(kind, id_or_name,
                                                 parent=parent)
            kind, id_or_name = path[-1]
            keyword = 'id' if isinstance(id_or_name, int) else 'name'
            entity = datastore.Entity('Leaf', parent=parent,
                                      **{keyword: id_or_name})
            made[entity.key()] = entity
        datastore.Put(list(made.values()))
        stored = list(entities.iter_range_keys('Leaf', ''))
        shuffled = stored[::-1]
        assert sorted(shuffled, key=entities.sort_key) == stored
    finally:
        bed.deactivate()


def test_put_encoded_stores_the_bytes_as_given_and_retries(
        gae_testbed, faulty_datastore):
    records = []
    for number in range(3):
        entity = datastore.Entity('Raw', name='n%d' % number,
                                  unindexed_properties=['text'])
        entity.update({'number': number, 'text': 't' * number})
        records.append(entity._ToPb().SerializeToString())
    fault = faulty_datastore(every=2, methods=('Put',))
    entities.put_encoded(records[:1])
    entities.put_encoded(records[1:])  # its first try fails
    assert fault.injected == 1
    stored = [e.SerializeToString() for e in entities.iter_range('Raw', '')]
    assert stored == records


def test_puts_sent_together_land_once_each_a_failed_one_again(
        gae_testbed, faulty_datastore):
    records = [datastore.Entity('Raw', name='n%d' % number)._ToPb()
               .SerializeToString() for number in range(4)]
    fault = faulty_datastore(every=2, methods=('Put',))
    sent = [entities.SentPut([record]) for record in records]
    for put in sent:
        put.wait()
    assert fault.injected >= 1
    stored = [e.SerializeToString() for e in entities.iter_range('Raw', '')]
    assert stored == records


def test_deletes_sent_together_land_once_each_a_failed_one_again(
        gae_testbed, faulty_datastore):
    keys = [datastore.Put(datastore.Entity('Raw', name='n%d' % number))
            for number in range(4)]
    fault = faulty_datastore(every=2, methods=('Delete',))
    sent = [entities.SentDelete([entities.ref(key)]) for key in keys]
    for delete in sent:
        delete.wait()
    assert fault.injected >= 1
    assert list(entities.iter_range('Raw', '')) == []


def test_put_encoded_raises_the_datastores_errors(gae_testbed):
    entity = datastore.Entity('Raw', name='x', _app='another-app')
    with pytest.raises(datastore_errors.BadRequestError):
        entities.put_encoded([entity._ToPb().SerializeToString()])


def test_the_librarys_batches_are_one_call_each(datastore_calls):
    from lovely_gae import base
    from lovely_gae.completion import Done
    lists = [Done(key_name='done-%d' % number, tally={'n': number})
             for number in range(500)]
    keys = base.put_all(lists)  # 500 entity groups: the SDK cuts 10 a call
    assert len(base.get_all(keys)) == 500
    base.delete_all(keys)
    # 500 of the library's entities are 500 entity groups, which the SDK
    # cuts 10 to a call. A get may still be asked twice: the stub answers
    # part of it and defers the rest.
    assert [call for call in datastore_calls if call != 'Get'] == [
        'Put', 'Delete']
    assert datastore_calls.count('Get') <= 2
    assert base.get_all(keys) == [None] * 500


def test_a_put_inside_a_transaction_commits_or_rolls_back_with_it(
        gae_testbed):
    from lovely_gae.base import transaction
    entity = datastore.Entity('Note', name='kept')
    proto = entity.ToPb()

    def fail():
        entities.put([proto])
        raise RuntimeError('rolled back')
    with pytest.raises(RuntimeError):
        transaction(fail)
    assert entities.get([entity.key()._ToPb()]) == [None]
    transaction(entities.put, [proto])
    [stored] = entities.get([entity.key()._ToPb()])
    assert stored.SerializeToString() == proto.SerializeToString()
