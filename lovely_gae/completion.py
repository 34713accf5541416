"""Knowing when all parts of a job are done, with no entity they all rewrite.

A job of ``total`` parts (tasks, say) is a tree of small ``Done`` markers.
A part that is done stores its marker, with a tally of counts, then reads
the markers of its group of ``FANOUT`` parts; the part that finds its group
complete stores the group's marker one level up, with the group's summed
tally, and goes on the same way up to the level that is one group: whoever
finds that one complete has the job's total, stored nowhere (a root marker
would cost a write and a read more). Each part stores before it
reads, and reads by key are strongly consistent, so of the parts that end
a group at least one sees it whole (two may: what follows the root must
bear running twice). No transaction, no contention: a part costs one write
and one batch read, and each level above costs a ``FANOUT``-th of that.

Parts that end together may all find the job complete, and each acts on
it: what follows must bear running twice. No one of them may leave it to
another: a task runs at least once, and a stale copy of one whose queue
entry is gone may find the job complete too and die before it acts.

A job whose total is not known while its parts run (the ranges of a key
pass that is still going) is ``close``\\ d once it is: full groups complete
as before, the last one, and the root, once the total is known; whoever
comes last, a part or the close, sees it.
"""
from .base import JsonProperty, LibraryModel, get_all, put_all

__all__ = ['FANOUT', 'Done', 'key', 'keys', 'marker', 'mark', 'ascend',
           'close', 'add_up', 'tally', 'WIDEST']

#: Parts in a group, and groups in a group one level up.
FANOUT = 8
#: Parts in a group at most, for a job whose total is known: the last of
#: its parts sees a job of that many complete in one read.
WIDEST = 64


class Done(LibraryModel):
    """The marker of a done part (level 0), a whole group (above), or the
    total of a job closed late."""

    tally = JsonProperty()  # {name: int}

    @classmethod
    def kind(cls):
        return 'LovelyGaeDone'


def _key(job, level, index):
    return Done.key_for('%s:%02d:%010d' % (job, level, index))


def _total_key(job):
    return Done.key_for('%s:total' % job)


def add_up(tallies):
    """The sum of ``tallies`` ({name: int} each), name by name."""
    total = {}
    for counts in tallies:
        for name, value in counts.items():
            total[name] = total.get(name, 0) + value
    return total


def _size(total, level, fanout):
    """Nodes at ``level`` of a job of ``total`` parts."""
    for _ in range(level):
        total = -(-total // fanout)
    return total


def key(job, index):
    """The key of part ``index``'s marker: there once the part is done."""
    return _key(job, 0, index)


def marker(job, index, counts):
    """The unsaved marker of part ``index`` done with ``counts``: for a
    caller that stores it in a transaction of its own, then ``ascend``\\ s."""
    return Done(key=_key(job, 0, index), tally=counts)


def mark(job, index, counts, total=None, fanout=FANOUT):
    """Record part ``index`` done with ``counts`` ({name: int}), then
    ``ascend``; ``total`` may be None for a job that is closed later."""
    put_all([marker(job, index, counts)])
    return ascend(job, index, total, fanout)


def ascend(job, index, total=None, fanout=FANOUT):
    """Complete what the stored part ``index`` completes, level by level.

    Returns the summed counts of the whole job if it is complete now, as
    this call sees it, else None. ``fanout``: parts in a group, the same
    for every part of the job (a job of at most ``fanout`` parts is
    complete when one read finds them all): wider groups cost each part a
    larger read, and the last one fewer levels. A job whose total is not
    known yet has groups of ``FANOUT``.
    """
    if total is None:
        fanout = FANOUT
    level, size = 0, total
    while True:
        group = index // fanout
        first = group * fanout
        keys = [_key(job, level, first + offset) for offset in
                range(fanout if size is None else min(fanout, size - first))]
        if total is None:
            keys.append(_total_key(job))
        found = get_all(keys)
        if total is None:
            closed = found.pop()
            if closed is not None:
                total = closed.tally['total']
                size = _size(total, level, fanout)
                found = found[:min(fanout, size - first)]
        if any(node is None for node in found):
            return None
        counts = add_up(node.tally for node in found)
        if size is not None and size <= fanout:
            return counts  # the group is the whole level: the job's total
        level, index = level + 1, group
        size = None if size is None else -(-size // fanout)
        put_all([Done(key=_key(job, level, index), tally=counts)])


def close(job, total):
    """Record that ``job`` has ``total`` parts; then ``ascend`` as its last
    part would. Returns what ``ascend`` returns."""
    put_all([Done(key=_total_key(job), tally={'total': total})])
    return ascend(job, total - 1, total)


def keys(job, total, fanout=FANOUT):
    """The key of every marker a job of ``total`` parts may store, found
    or not: to delete them with no query once the job is done."""
    found, level = [], 0
    while True:
        size = _size(total, level, fanout)
        found += [_key(job, level, index) for index in range(size)]
        if size <= fanout:
            return found
        level += 1


def tally(job, total, fanout=FANOUT):
    """The summed counts of the parts done so far of a job of ``total``
    parts (``fanout`` as its parts ``mark`` it): what a poll of its
    progress shows, read from the top of its tree down. A complete group's
    marker stands for its parts; only the groups not complete are read
    into, a level at a time, each run of them with one query, all of a
    level at once. So a poll reads about ``fanout`` markers a level for
    each group under way, not one a part done (62,500 for a restore of
    100 million entities)."""
    level = 0
    while _size(total, level, fanout) > fanout:
        level += 1
    counts, runs = [], [(0, _size(total, level, fanout))]
    while runs:
        sent = [(low, high, _between(job, level, low, high))
                for low, high in runs]  # on their way at once
        gaps = []
        for low, high, found in sent:
            at = low
            for node in found:
                index = int(node.key().name()[-10:])
                counts.append(node.tally)
                if index > at:
                    gaps.append((at, index))
                at = index + 1
            if at < high:
                gaps.append((at, high))
        if level == 0:
            break
        level -= 1
        size = _size(total, level, fanout)
        runs = []
        for low, high in gaps:  # their groups' parts, one level down
            low, high = low * fanout, min(high * fanout, size)
            if runs and runs[-1][1] == low:
                runs[-1] = (runs[-1][0], high)
            else:
                runs.append((low, high))
    return add_up(counts)


def _between(job, level, low, high):
    """The markers stored at ``level`` from node ``low`` up to ``high``."""
    return Done.all().filter('__key__ >=', _key(job, level, low)).filter(
        '__key__ <', _key(job, level, high)).run(batch_size=1000)

