"""A large kind's shards: cut at even spans of ids where the sample shows
ids spread evenly, each counting itself, the last finishing the snapshot
with a few calls."""
import pytest
from google.appengine.api import datastore
from google.appengine.ext import db

from lovely_gae import async_, completion
from lovely_gae.snapshot import api
from lovely_gae.snapshot.models import SHARD_STRIDE
from lovely_gae.snapshot.work import passes
from lovely_gae.snapshot.models import RangeBackup
from tests.conftest import Dummy, Yummy


def key(*path, **options):
    return datastore.Key.from_path(*path, _app='app', **options)


def keys(ids, kind='Dummy'):
    return [key(kind, id_) for id_ in ids]


def test_ids_spread_evenly_are_cut_into_even_spans():
    found = keys(range(101, 10001, 100))  # 99 keys, ids 101 to 9901
    starts = passes.even_ids(found, 4)
    assert starts[0] is None
    # The span reaches a gap beyond each end: 1 to 10001.
    assert [key.id() for key in starts[1:]] == [2501, 5001, 7501]


def test_even_spans_run_from_the_kinds_first_id_to_a_gap_past_the_last_sampled():
    """The kind's first key is read with its sample: the first shard is as
    large as the others, not a guessed gap off. Its last key is not read
    (that query would need a composite index): the last shard ends a gap
    between sampled ids past the highest, as the spread says."""
    found = keys(range(1101, 10001, 100))  # sampled: ids 1101 to 9901
    starts = passes.even_ids(found, 4, key('Dummy', 1))
    assert [key.id() for key in starts[1:]] == [2501, 5001, 7501]
    # Not an id: a gap below the lowest sampled id too.
    starts = passes.even_ids(found, 4, key('Dummy', 'first'))
    assert [key.id() for key in starts[1:]] == [3251, 5501, 7751]


def test_a_sample_a_little_off_even_still_counts_as_even():
    # 100 ids whose spread is off an even one by 0.15 at most: a chance
    # in 50 or so for a sample of an even spread, so cut as one.
    found = keys(1 + int(100000 * ((rank + 0.5) / 100) ** 1.5)
                 for rank in range(100))
    assert passes.even_ids(found, 4) is not None
    # Farther off: cut at sampled keys.
    found = keys(1 + int(100000 * ((rank + 0.5) / 100) ** 1.7)
                 for rank in range(100))
    assert passes.even_ids(found, 4) is None


@pytest.mark.parametrize('found', [
    keys(list(range(1, 50)) + list(range(10 ** 6, 10 ** 6 + 50))),
    keys(range(1, 100)) + [key('Dummy', 'name')],
    [key('Dummy', 'k%03d' % n) for n in range(100)],
    [key('Dummy', n, parent=key('Parent', 1)) for n in range(1, 100)],
    keys(range(1, 100)),  # too few ids to cut 4 spans of 99 apart
], ids=['clustered', 'a name among ids', 'names', 'children',
        'dense and narrow'])
def test_other_samples_are_cut_at_sampled_keys(found):
    assert passes.even_ids(found, 4) is None


def test_a_kind_of_counted_ids_is_cut_into_even_shards(
        gae_testbed, run_tasks, sharded):
    db.put([Dummy(key=db.Key.from_path('Dummy', number), title='x')
            for number in range(1, 2001)])
    snap = api.create_snapshot(['Dummy'], batchsize=50)
    run_tasks(recursive=True)
    snap = api.get_snapshot(snap.id)
    assert snap.status == 'finished' and snap.entity_count == 2000
    held = [0] * 4
    for backup in snap.range_backups('Dummy'):
        held[backup.position // SHARD_STRIDE] += backup.count
    # 500 entities a shard, give or take a sampled gap at the ends; cut at
    # sampled keys (64 a shard), they would vary by about 60.
    assert all(abs(count - 500) <= 10 for count in held), held


def test_the_last_shard_finishes_the_snapshot_with_a_few_calls(
        gae_testbed, run_tasks, datastore_calls, sharded):
    db.put([Dummy(key=db.Key.from_path('Dummy', number), title='x')
            for number in range(1, 401)])
    snap = api.create_snapshot(['Dummy'], batchsize=50)
    assert run_tasks(max_tasks=1) == 1  # the cut, and shard 0
    assert run_tasks(max_tasks=2) == 2  # shards 1 and 2
    datastore_calls.clear()
    assert run_tasks(max_tasks=1) == 1  # shard 3, the last
    assert api.get_snapshot(snap.id).status == 'finished'
    # The worker's lease (8 calls); the snapshot, the query, the commit
    # (4), the kind's shards read once, the snapshot read and finished
    # (2), the task gone: 18, where counting the shard's parts, then the
    # shard in its kind, then the kind in the snapshot took 27.
    assert len(datastore_calls) <= 18, datastore_calls
    # Each shard's marker in its kind, and no marker above them.
    assert completion.Done.all().filter(
        '__key__ >=', completion.Done.key_for('S:%d:0:00:' % snap.id)).filter(
        '__key__ <', completion.Done.key_for('S:%d:0:01' % snap.id)).count() == 4
    assert not async_.get_tasks()


def test_a_storing_snapshots_progress_reads_a_shard_not_a_range(
        gae_testbed, run_tasks, sharded, query_reads):
    """A storing snapshot's status is polled: each poll reads one entity a
    shard of a large kind, as many with 150 ranges stored as with 50, and
    counts them right. (It read the key of every range stored: at 100
    million entities, half a million keys a poll.)"""
    db.put([Dummy(key=db.Key.from_path('Dummy', number), title='x')
            for number in range(1, 2001)])
    db.put([Yummy(title=str(number)) for number in range(25)])
    read = query_reads
    snap = api.create_snapshot(['Dummy', 'Yummy'], batchsize=10)
    polls = []
    while api.get_snapshot(snap.id).status != 'finished':
        read.clear()
        progress = api.get_snapshot(snap.id).progress()['by_kind']
        stored = {kind: RangeBackup.all().filter(
            '__key__ >=', RangeBackup.key_for('RB:%d:%s:' % (snap.id, kind))
        ).filter('__key__ <', RangeBackup.key_for(
            'RB:%d:%s;' % (snap.id, kind))).count() for kind in progress}
        assert {kind: counts['ranges_done'] for kind, counts
                in progress.items()} == stored
        polls.append((stored['Dummy'], sum(read)))
        run_tasks(max_tasks=1)
    done = [ranges for ranges, _ in polls]
    assert max(done) >= 150 and sorted(done) == done, polls
    # Up to a shard's progress a shard (4), and Yummy's 3 ranges by name.
    assert max(reads for _, reads in polls) <= 4 + 3, polls


def test_a_job_complete_in_one_group_stores_no_marker_above_it(gae_testbed):
    totals = [completion.mark('J', index, {'n': 1}, 3) for index in range(3)]
    assert totals == [None, None, {'n': 3}]
    assert completion.Done.all().count() == 3  # the parts' own
    # As wide as asked: 20 parts in one group of 64, read at once.
    totals = [completion.mark('K', index, {'n': 1}, 20, fanout=64)
              for index in range(20)]
    assert totals[-1] == {'n': 20} and completion.Done.all().count() == 23
