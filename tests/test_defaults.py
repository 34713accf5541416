"""What the library writes in one request or transaction stays within the
datastore's limits, as ``defaults`` spells them."""
from lovely_gae import defaults, tasks, taskstore
from lovely_gae.snapshot.work import passes, ranges, waves


def test_a_stored_part_and_a_task_fit_an_entity_and_a_request():
    assert defaults.PART_SIZE < defaults.MAX_ENTITY_BYTES
    assert defaults.PART_SIZE < defaults.MAX_REQUEST_BYTES
    assert tasks.MAX_PAYLOAD < defaults.MAX_ENTITY_BYTES


def test_a_range_task_commits_within_one_transaction():
    # Its ranges' first parts, with its marker and its own task entity.
    assert ranges.PER_TASK * defaults.PART_SIZE < \
        defaults.MAX_TRANSACTION_BYTES
    assert ranges.PER_TASK + 2 <= defaults.MAX_TRANSACTION_GROUPS


def test_what_commits_with_a_start_or_a_lease_spans_few_enough_groups():
    groups = defaults.MAX_TRANSACTION_GROUPS
    assert taskstore.BATCH + 1 <= groups  # the tasks and the lease entity
    # The snapshot, the restore, the locks' root and a task a range.
    assert waves.INLINE_RANGES + 3 <= groups
    assert passes._FIRST_KINDS + 1 <= groups  # the snapshot and its tasks
