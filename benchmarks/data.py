"""The benchmark's data and datastores: one realistic kind, made the same
way every time, and fresh testbeds to hold it."""
import contextlib
import datetime
import gc
import random
import statistics

from google.appengine.api import datastore, datastore_types

from lovely_gae import defaults, entities, local

__all__ = ['KIND', 'PROPERTIES', 'dataset', 'mean_size', 'fill',
           'delete_all', 'count', 'settle', 'testbed', 'save']

KIND = 'BenchCustomer'
#: The six properties, of mixed types; ``notes`` is unindexed text.
PROPERTIES = ('name', 'email', 'joined', 'balance', 'visits', 'notes')
SEED = 5
_PUT_BATCH = defaults.MAX_REQUEST_ENTITIES

_cache = {'app': None, 'records': []}


def _vocabulary(rng, size=4000):
    letters = 'etaoinshrdlucmfwypvbgkjqxz'
    weights = [26 - i for i in range(26)]
    return [''.join(rng.choices(letters, weights, k=rng.randint(2, 10)))
            for _ in range(size)]


def _generate(app, count):
    """Yield ``count`` encoded entities; the first n are always the same."""
    rng = random.Random(SEED)
    words = _vocabulary(rng)
    # Word frequencies fall off as in natural language (Zipf).
    cumulative, total = [], 0.0
    for rank in range(len(words)):
        total += 1.0 / (rank + 1)
        cumulative.append(total)
    epoch = datetime.datetime(2012, 1, 1)
    for number in range(1, count + 1):
        entity = datastore.Entity(KIND, id=number, _app=app,
                                  unindexed_properties=['notes'])
        first, last = rng.choices(words, cum_weights=cumulative, k=2)
        entity['name'] = '%s %s' % (first.title(), last.title())
        entity['email'] = '%s.%s%d@example.com' % (first, last,
                                                   rng.randrange(1000))
        entity['joined'] = epoch + datetime.timedelta(
            seconds=rng.randrange(400000000),
            microseconds=rng.randrange(10**6))
        entity['balance'] = round(rng.uniform(-500, 25000), 2)
        entity['visits'] = int(rng.paretovariate(1.2))
        entity['notes'] = datastore_types.Text(' '.join(rng.choices(
            words, cum_weights=cumulative, k=rng.randint(6, 20))))
        yield entity._ToPb().SerializeToString()


def dataset(count):
    """The first ``count`` entities, encoded, in key order.

    Made once in an active testbed (the keys need its app id), then kept.
    """
    if len(_cache['records']) < count:
        app = datastore_types.ResolveAppId(None)
        _cache['app'] = app
        _cache['records'] = list(_generate(app, count))
    return _cache['records'][:count]


def mean_size(count):
    return statistics.mean(len(record) for record in dataset(count))


def fill(count):
    """Put the first ``count`` entities with raw batched puts."""
    records = dataset(count)
    for start in range(0, count, _PUT_BATCH):
        entities.put([entities.EntityProto.FromString(record)
                      for record in records[start:start + _PUT_BATCH]])


def delete_all(kind=KIND):
    keys = list(entities.iter_range_keys(kind, ''))
    for start in range(0, len(keys), _PUT_BATCH):
        entities.delete(keys[start:start + _PUT_BATCH])


def settle():
    """Have the stub apply the writes it still holds back.

    The SDK's stub applies a committed write at the next query, where a
    datastore applies it at commit. So that each side pays for its own
    writes and for no one else's, setup settles before a clock starts and
    each side settles before its clock stops.
    """
    datastore.Query('BenchSettle', keys_only=True).Get(1)


def count(kind=KIND):
    return sum(1 for _ in entities.iter_range_keys(kind, ''))


@contextlib.contextmanager
def testbed(datastore_file=None):
    """A fresh testbed, empty or loaded from a datastore file (read by the
    library's parser, as ``lovely-gae`` reads one).

    With a file that does not exist yet, the datastore starts empty and
    ``save`` can write it there.
    """
    bed = local.start_testbed()
    bed.datastore_file = datastore_file
    try:
        if datastore_file is not None:
            local.load_datastore(bed.get_stub('datastore_v3'),
                                 datastore_file)
        yield bed
    finally:
        bed.deactivate()
        del bed
        gc.collect()


def save(bed):
    """Write the testbed's datastore to the file it was opened with."""
    local.save_datastore(bed.get_stub('datastore_v3'), bed.datastore_file)
