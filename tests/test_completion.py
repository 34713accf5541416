"""Knowing when all parts of a job are done: few levels."""
import random

from lovely_gae import completion
from tests.conftest import markers


def test_the_part_that_completes_the_top_level_stores_no_root(gae_testbed):
    # 8 parts are one group: the last part sums them, and nothing is
    # stored above them (a root marker would cost a write and a read).
    order = list(range(8))
    random.Random(1).shuffle(order)
    found = [completion.mark('job', index, {'n': 1, 'i': index}, 8)
             for index in order]
    assert found[:-1] == [None] * 7
    assert found[-1] == {'n': 8, 'i': sum(range(8))}
    assert markers('job') == ['job:00:%010d' % index for index in range(8)]


def test_a_wider_fanout_counts_a_job_in_one_level(gae_testbed):
    order = list(range(20))
    random.Random(2).shuffle(order)
    found = [completion.mark('wide', index, {'n': 1}, 20, fanout=32)
             for index in order]
    assert found[-1] == {'n': 20} and found[:-1] == [None] * 19
    assert len(markers('wide')) == 20  # no level above the parts
    # With the default fan-out the same job has a level above them.
    for index in range(20):
        found = completion.mark('narrow', index, {'n': 1}, 20)
    assert found == {'n': 20}
    assert len(markers('narrow')) == 20 + 3


def test_a_part_run_again_finds_the_job_complete(gae_testbed):
    for index in range(10):
        completion.mark('again', index, {'n': 1}, 10)
    assert completion.ascend('again', 3, 10) == {'n': 10}
    assert completion.ascend('again', 9, 10) == {'n': 10}


def test_a_progress_poll_reads_the_groups_under_way_not_every_part(
        query_reads):
    """``tally`` sums the parts done exactly, as the parts finish in any
    order, reading complete groups' markers for their parts: a poll of a
    job of 1,024 parts two thirds done reads tens of markers, not the
    700 of the parts done."""
    read = query_reads
    total = 1024
    order = list(range(total))
    rng = random.Random(3)
    # Taken about in queue order, 16 at a time: each of the next 16 ends
    # first as likely as another.
    done, waiting, polls = 0, order, []
    while waiting:
        running, waiting = waiting[:16], waiting[16:]
        rng.shuffle(running)
        for index in running:
            completion.mark('big', index, {'ranges': 2}, total)
            done += 1
            if index % 37 == 0:
                read.clear()
                assert completion.tally('big', total) == {'ranges': 2 * done}
                polls.append((done, sum(read)))
    assert completion.tally('big', total) == {'ranges': 2 * total}
    assert polls[-1][0] > 700, polls
    # 8 a level for the group under way and those it is in, 4 levels.
    assert max(reads for _, reads in polls) <= 4 * 8 * 2, polls
