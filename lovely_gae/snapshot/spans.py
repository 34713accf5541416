"""Which ranges a snapshot counted, as spans of positions, and what is
missing of them: every reader checks them here before it trusts one."""
import itertools

from ..exceptions import SnapshotIncomplete

__all__ = ['check_complete', 'missing']


def check_complete(snapshot_id, spans, ranges):
    """Raise ``SnapshotIncomplete`` unless ``ranges`` (``(kind, position)``
    of each) are every position of ``spans`` (``{kind: [(first position,
    ranges), ...]}``) once each, and no other."""
    positions = {kind: [] for kind in spans}
    for kind, position in ranges:
        if kind not in positions:
            raise SnapshotIncomplete(snapshot_id, 'it has a range of kind %r '
                                     'it does not hold' % (kind,))
        positions[kind].append(position)
    for kind, kind_spans in spans.items():
        found = sorted(positions[kind])
        if kind_spans is None or not _matches(found, kind_spans):
            raise SnapshotIncomplete(snapshot_id, missing(kind, found,
                                                           kind_spans))


def _positions(spans):
    """The positions of ``spans``, one by one (there may be very many)."""
    return (position for first, count in spans
            for position in range(first, first + count))


def _matches(found, spans):
    """Are the sorted positions ``found`` those of ``spans``?"""
    return (len(found) == sum(count for _, count in spans)
            and all(a == b for a, b in zip(found, _positions(spans))))


def missing(kind, found, spans):
    """What is wrong with the positions ``found`` of ``kind``, which should
    be those of ``spans``, once each."""
    if spans is None:
        return 'the ranges of kind %r are not known' % kind
    have = set(found)
    count = sum(size for _, size in spans)
    if len(have) != len(found) or len(found) > count:
        return 'kind %r has %d ranges, it recorded %d' % (kind, len(found),
                                                          count)
    # The first few missing: ``count`` may be large, the ranges found not.
    missing = list(itertools.islice(
        (position for position in _positions(spans)
         if position not in have), 5))
    inside = sum(1 for position in have if any(
        first <= position < first + size for first, size in spans))
    lacking = count - inside
    if len(spans) == 1 and spans[0][0]:  # a window of the kind's ranges
        if count == 1:
            return 'kind %r lacks its range %d' % (kind, spans[0][0])
        which = 'of its ranges %d to %d' % (spans[0][0],
                                            spans[0][0] + count - 1)
    else:
        which = 'of its %d ranges' % count
    return 'kind %r lacks %d %s (positions %s%s)' % (
        kind, lacking, which, ', '.join(map(str, missing)),
        ', ...' if lacking > len(missing) else '')
