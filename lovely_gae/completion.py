"""Knowing when all parts of a job are done, with no entity they all rewrite.

A job of ``total`` parts (tasks, say) is a tree of small ``Done`` markers.
A part that is done stores its marker, with a tally of counts, then reads
the markers of its group of ``FANOUT`` parts; the part that finds its group
complete stores the group's marker one level up, with the group's summed
tally, and goes on the same way up to the root. Each part stores before it
reads, and reads by key are strongly consistent, so of the parts that end
a group at least one sees it whole (two may: what follows the root must
bear running twice). No transaction, no contention: a part costs one write
and one batch read, and each level above costs a ``FANOUT``-th of that.
"""
from .base import (JsonProperty, LibraryModel, delete_all, get_all, prefixed,
                   put_all)

__all__ = ['FANOUT', 'Done', 'mark', 'is_marked', 'tally', 'purge']

#: Parts in a group, and groups in a group one level up.
FANOUT = 16


class Done(LibraryModel):
    """The marker of a done part (level 0) or a whole group (above)."""

    tally = JsonProperty()  # {name: int}

    @classmethod
    def kind(cls):
        return 'LovelyGaeDone'


def _name(job, level, index):
    return '%s:%02d:%010d' % (job, level, index)


def _sum(tallies):
    total = {}
    for counts in tallies:
        for name, value in counts.items():
            total[name] = total.get(name, 0) + value
    return total


def mark(job, index, total, counts):
    """Record part ``index`` of ``total`` done with ``counts`` ({name: int}).

    Returns the summed counts of the whole job if it is complete now, as
    this call sees it, else None.
    """
    level, size = 0, total
    while True:
        put_all([Done(key=Done.key_for(_name(job, level, index)),
                      tally=counts)])
        if size <= 1:
            return counts
        group = index // FANOUT
        members = range(group * FANOUT, min(group * FANOUT + FANOUT, size))
        found = get_all([Done.key_for(_name(job, level, member))
                         for member in members])
        if any(marker is None for marker in found):
            return None
        counts = _sum(marker.tally for marker in found)
        level, index, size = level + 1, group, -(-size // FANOUT)


def is_marked(job, index):
    """Whether part ``index`` of ``job`` has been marked done."""
    return get_all([Done.key_for(_name(job, 0, index))])[0] is not None


def tally(job):
    """The summed counts of the parts done so far (one read a part)."""
    return _sum(marker.tally
                for marker in prefixed(Done, _name(job, 0, 0)[:-10]))


def purge(job):
    """Delete every marker of ``job``."""
    keys = list(prefixed(Done, job + ':', keys_only=True))
    for start in range(0, len(keys), 500):
        delete_all(keys[start:start + 500])
