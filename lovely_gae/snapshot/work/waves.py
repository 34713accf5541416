"""How a restore's phases are cut into tasks: the ranges each task takes,
in as few whole waves of the queue's concurrency (``defaults.SHARDS``) as
the most a task may take allow, and the ``completion`` groups that count
them. A restore of at most ``INLINE_RANGES`` ranges is checked in the call
that starts it, a task a range.
"""
from ... import completion, defaults

__all__ = ['INLINE_RANGES', 'CHECK_RANGES', 'WRITE_RANGES', 'per_task',
           'size_tasks', 'leaf', 'leaves', 'fanout']

#: Ranges a restore checks in the call that starts it at most; its tasks,
#: one a range, then commit with its start (a transaction spans
#: ``defaults.MAX_TRANSACTION_GROUPS`` entity groups: the snapshot, the
#: restore, the locks and these tasks).
INLINE_RANGES = 20
#: Ranges one checking task of a large restore checks at most.
CHECK_RANGES = 20
#: Ranges one writing task of a large restore (or of its dry run) puts
#: back at most: what one task holds at once.
WRITE_RANGES = 8


def _tasks(spans, per):
    """Tasks of ``per`` ranges ``spans`` (``[.., .., ranges]``) make: a
    task takes ranges of one span (a shard's) only."""
    return sum(-(-total // per) for _, _, total in spans)


def _fewest(spans, tasks, least):
    """The fewest ranges a task (``least`` at least) for which ``spans``
    make ``tasks`` tasks at most (as many as it takes: more tasks, if
    there are more spans)."""
    low, high = least, max([least] + [total for _, _, total in spans])
    while low < high:
        middle = (low + high) // 2
        if _tasks(spans, middle) <= tasks:
            high = middle
        else:
            low = middle + 1
    return low


def per_task(spans, most):
    """Ranges a task of a large restore takes of ``spans``: as few waves
    of ``defaults.SHARDS`` tasks (the queue's concurrency) as ``most``
    ranges a task allow, the ranges spread evenly over their tasks. So the
    first wave keeps every worker busy (100 ranges on 16 workers: 15 tasks
    of 7, not 25 of 4, whose second wave of 9 would run alone). A task
    takes the ranges of one span (a shard's) only: the waves are counted
    in tasks, span by span (3 spans of 6 ranges on 4 workers: 3 tasks of
    6, not 6 of 5 and 1 in two waves)."""
    total = sum(count for _, _, count in spans)
    if total <= 0:
        return 1
    waves = -(-total // (defaults.SHARDS * most))
    even = -(-total // (waves * defaults.SHARDS))
    return min(_fewest(spans, waves * defaults.SHARDS, even), most)


def _check_per_task(spans):
    """Ranges a checking task of a large restore takes: as ``per_task``,
    or more, up to ``CHECK_RANGES``, so that the checks commit with the
    restore's start (``INLINE_RANGES`` tasks) rather than a fan-out task
    later: checking a range costs a fraction of a task's start (16
    spans of 7 ranges, 20 tasks in the commit: 16 tasks of 7, not 32 of 6
    and 1 behind a fan-out task)."""
    per = per_task(spans, CHECK_RANGES)
    fewer = _fewest(spans, INLINE_RANGES, per)
    return fewer if per < fewer <= CHECK_RANGES else per


def size_tasks(record):
    """Size the tasks of ``record``, if it has more ranges than the call
    that starts it checks (else a task a range)."""
    if record.ranges_total() > INLINE_RANGES:
        record.per_task = per_task(record.spans, WRITE_RANGES)
        record.check_per_task = _check_per_task(record.spans)


def _per_task(record, phase):
    return record.check_per_task if phase == 'check' else record.per_task


def leaf(record, phase, index):
    """``(kind, first position, ranges)`` of task ``index`` of a phase."""
    per = _per_task(record, phase)
    for kind_index, first, total in record.spans:
        tasks = -(-total // per)
        if index < tasks:
            start = index * per
            return (record.kinds[kind_index], first + start,
                    min(per, total - start))
        index -= tasks
    return None


def leaves(record, phase):
    """How many tasks a phase of ``record`` has."""
    return _tasks(record.spans, _per_task(record, phase))


def fanout(record, phase):
    """The ``completion`` fan-out of a phase's job: a group as large as a
    wave of tasks (up to ``completion.WIDEST``), so that the last task of
    a wave counts the whole job in one read."""
    return max(completion.FANOUT,
               min(leaves(record, phase), completion.WIDEST))
