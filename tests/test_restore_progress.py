"""A restore (or dry run) is visible while it runs: its ranges counted,
in all and per kind, under the id its start left on the snapshot."""
import pytest

from lovely_gae.snapshot import api
from tests.conftest import Dummy, Yummy


def test_progress_counts_ranges_while_a_restore_runs(make_entities,
                                                     finished_snapshot,
                                                     run_tasks):
    make_entities(Dummy, 30)
    snap = finished_snapshot(['Dummy'], batchsize=10)
    snap.restore()
    assert run_tasks(max_tasks=1) == 1
    progress = api.get_snapshot(snap.id).restore_progress()
    assert (progress['status'], progress['ranges_done'],
            progress['ranges_total']) == ('running', 1, 3)
    assert run_tasks(recursive=True) == 2
    progress = api.get_snapshot(snap.id).restore_progress()
    assert (progress['status'], progress['ranges_done'],
            progress['ranges_total'], progress['entities']) == (
        'finished', 3, 3, 30)


@pytest.mark.parametrize('dry_run', [False, True])
def test_progress_is_counted_per_kind(make_entities, finished_snapshot,
                                      run_tasks, dry_run):
    make_entities(Dummy, 30)
    make_entities(Yummy, 10)
    snap = finished_snapshot(['Dummy', 'Yummy'], batchsize=10)
    snap.restore(dry_run=dry_run)
    shown = api.get_snapshot(snap.id)
    progress = shown.plan_progress() if dry_run else shown.restore_progress()
    while progress['ranges_done'] == 0 and progress['status'] != 'finished':
        assert run_tasks(max_tasks=1) == 1
        shown = api.get_snapshot(snap.id)
        progress = (shown.plan_progress() if dry_run
                    else shown.restore_progress())
    assert progress['status'] == 'running'
    by_kind = progress['by_kind']
    assert {kind: counts['ranges_total'] for kind, counts in
            by_kind.items()} == {'Dummy': 3, 'Yummy': 1}
    done = sorted(counts['ranges_done'] for counts in by_kind.values())
    assert progress['ranges_done'] == sum(done) and done[0] == 0
    run_tasks(recursive=True)
    shown = api.get_snapshot(snap.id)
    progress = shown.plan_progress() if dry_run else shown.restore_progress()
    assert progress['by_kind'] == {
        'Dummy': {'ranges_done': 3, 'ranges_total': 3},
        'Yummy': {'ranges_done': 1, 'ranges_total': 1}}


def test_a_snapshot_names_the_restore_started_on_it(
        make_entities, finished_snapshot, run_tasks):
    """``restore()`` returns None (the seed's doctest shows nothing), and
    leaves on the snapshot it was called on the id of the restore (or dry
    run) it started, which another of another kind may follow at once."""
    make_entities(Dummy, 5)
    make_entities(Yummy, 5)
    snap = finished_snapshot(['Dummy', 'Yummy'])
    mine, theirs = api.get_snapshot(snap.id), api.get_snapshot(snap.id)
    assert mine.restore(kinds=['Dummy']) is None
    theirs.restore(kinds=['Yummy'])
    assert mine.restore(kinds=['Yummy'], dry_run=True) is None
    theirs.restore(kinds=['Dummy'], dry_run=True)
    stored = api.get_snapshot(snap.id)
    assert (stored.restore_id, stored.plan_id) == (theirs.restore_id,
                                                   theirs.plan_id)
    assert mine.restore_progress()['kinds'] == ['Dummy']
    assert mine.plan_progress()['kinds'] == ['Yummy']
    assert len({mine.restore_id, mine.plan_id, theirs.restore_id,
                theirs.plan_id}) == 4
    run_tasks(recursive=True)
    assert mine.restore_progress()['status'] == 'finished'
