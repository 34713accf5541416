"""The embedded datastore answers key-range and scatter queries exactly as
the SDK's file stub does, without reading the whole kind."""
import itertools
import random

from google.appengine.api import apiproxy_stub_map, datastore
from google.appengine.api import datastore_file_stub
from google.appengine.datastore import datastore_stub_util
from google.appengine.ext import testbed as testbed_module

from lovely_gae import filestub, local


def _fill():
    """Ids and names, some with parents, in two namespaces: a mixed kind."""
    rng = random.Random(7)
    put = []
    for namespace in ('', 'other'):
        for number in range(300):
            if number % 3:
                key = datastore.Key.from_path('Mixed', rng.randrange(1, 10**6),
                                              namespace=namespace)
            else:
                key = datastore.Key.from_path(
                    'Mixed', 'n%05d' % rng.randrange(10**5),
                    namespace=namespace)
            if number % 7 == 0:
                key = datastore.Key.from_path(
                    'Mixed', 'child%d' % number, parent=key,
                    namespace=namespace)
            entity = datastore.Entity(
                'Mixed', parent=key.parent(), namespace=namespace,
                **({'id': key.id()} if key.id() else {'name': key.name()}))
            entity['n'] = number
            put.append(entity)
    datastore.Put(put)


def _queries():
    """Key ranges of every kind of bound, in both namespaces."""
    keys = sorted(datastore.Query('Mixed', keys_only=True).Get(None))
    samples = keys[::37] + [None]
    for namespace in ('', 'other'):
        for low, high in itertools.product(samples[::3], samples[1::4]):
            for low_op, high_op in (('>=', '<'), ('>', '<='), ('>', '<')):
                yield namespace, low, low_op, high, high_op


def _run(namespace, low, low_op, high, high_op):
    query = datastore.Query('Mixed', namespace=namespace, keys_only=True)
    if low is not None:
        query['__key__ ' + low_op] = datastore.Key.from_path(
            *low.to_path(), namespace=namespace)
    if high is not None:
        query['__key__ ' + high_op] = datastore.Key.from_path(
            *high.to_path(), namespace=namespace)
    query.Order('__key__')
    return [str(key) for key in query.Get(None)]


def _answers(stub_class, queries):
    with local_stub(stub_class):
        _fill()
        answers = [_run(*query) for query in queries]
        sample = datastore.Query('Mixed', keys_only=True)
        sample.Order('__scatter__')
        answers.append([str(key) for key in sample.Get(20)])
        return answers


class local_stub:
    """A testbed on the SDK's own stub, or on ours as ``local`` makes it."""

    def __init__(self, stub_class):
        self.stub_class = stub_class

    def __enter__(self):
        if self.stub_class is filestub.DatastoreFileStub:
            self.bed = local.start_testbed()
        else:
            self.bed = testbed_module.Testbed()
            self.bed.activate()
            self.bed.setup_env(app_id=local.TESTING_APP_ID, overwrite=True)
            self.bed.init_datastore_v3_stub(
                consistency_policy=datastore_stub_util.
                PseudoRandomHRConsistencyPolicy(probability=1))
        stub = apiproxy_stub_map.apiproxy.GetStub('datastore_v3')
        assert type(stub) is self.stub_class
        return self.bed

    def __exit__(self, *exc_info):
        self.bed.deactivate()


def test_key_ranges_and_samples_are_answered_as_the_sdk_does():
    with local_stub(datastore_file_stub.DatastoreFileStub):
        _fill()
        queries = list(_queries())
    assert len(queries) > 50
    sdk = _answers(datastore_file_stub.DatastoreFileStub, queries)
    ours = _answers(filestub.DatastoreFileStub, queries)
    assert ours == sdk
    assert sum(len(answer) for answer in ours) > 1000


def test_writes_show_in_the_next_key_range(gae_testbed):
    stub = apiproxy_stub_map.apiproxy.GetStub('datastore_v3')
    assert isinstance(stub, filestub.DatastoreFileStub)
    datastore.Put([datastore.Entity('Note', id=number)
                   for number in range(10, 20)])
    before = datastore.Key.from_path('Note', 15)

    def between():
        query = datastore.Query('Note', keys_only=True)
        query['__key__ >='] = before
        query.Order('__key__')
        return [key.id() for key in query.Get(None)]
    assert between() == list(range(15, 20))
    datastore.Put([datastore.Entity('Note', id=17),  # there already
                   datastore.Entity('Note', id=99),
                   datastore.Entity('Note', name='after ids')])
    datastore.Delete([datastore.Key.from_path('Note', 16)])
    assert between() == [15, 17, 18, 19, 99, None]
