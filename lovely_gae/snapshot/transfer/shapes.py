"""The shapes of the app's JSON answers, as the client reads them.

An answer of another shape (a lovely_gae app of another version, another
service at the URL, a hostile one) is refused as it comes, in one line
that says where it is off (``BadAnswer``), not a ``KeyError`` later in
whatever reads it. A shape is a dict (an object with at least those keys,
each of its shape), ``ListOf``, ``MapOf`` (an object of any keys), or one
of ``INT``, ``TEXT``, ``FLAG``, ``NUMBER``; ``Maybe`` also takes null,
``Opt`` also an absent key.
"""
import json

from ...exceptions import DownloadError

__all__ = ['BadAnswer', 'check', 'PAGE', 'SNAPSHOT', 'STARTED', 'RESTORE',
           'DELETED', 'WORKER', 'UPLOADED']

INT, TEXT, FLAG, NUMBER = 'an integer', 'a string', 'true or false', 'a number'
_TYPES = {INT: int, TEXT: str, FLAG: bool, NUMBER: (int, float)}


class BadAnswer(DownloadError):
    """An answer of the app that is not of the shape the client reads."""

    def __init__(self, what, where, problem):
        super().__init__('%s answered JSON of another shape than a lovely_gae '
                         "app's: %s %s" % (what, where or 'the answer',
                                           problem))


class Maybe:
    def __init__(self, shape):
        self.shape = shape


class Opt(Maybe):
    """In an object: the key may be absent, or null."""


class ListOf:
    def __init__(self, shape):
        self.shape = shape


class MapOf(ListOf):
    """An object of any keys, each value of ``shape``."""


def _brief(value):
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + '...'


def check(value, shape, what, where=''):
    """``value`` if it is of ``shape``; else ``BadAnswer`` says where not
    (``what``: the request it answers)."""
    if isinstance(shape, Maybe):
        if value is None:
            return value
        shape = shape.shape
    if isinstance(shape, (dict, MapOf)):
        if not isinstance(value, dict):
            raise BadAnswer(what, where, 'is %s, not an object'
                            % _brief(value))
        inner = (shape.items() if isinstance(shape, dict) else
                 ((key, shape.shape) for key in value))
        for key, each in inner:
            here = '%s[%s]' % (where, json.dumps(key))
            if key not in value and not isinstance(each, Opt):
                raise BadAnswer(what, here, 'is missing')
            check(value.get(key), each, what, here)
    elif isinstance(shape, ListOf):
        if not isinstance(value, list):
            raise BadAnswer(what, where, 'is %s, not a list' % _brief(value))
        for index, item in enumerate(value):
            check(item, shape.shape, what, '%s[%d]' % (where, index))
    elif not isinstance(value, _TYPES[shape]) or (
            shape != FLAG and isinstance(value, bool)):
        raise BadAnswer(what, where, 'is %s, not %s' % (_brief(value), shape))
    return value


_BY_KIND = MapOf({'ranges_done': INT, 'ranges_total': Maybe(INT)})

#: ``Restore.to_dict()``: a restore's, or a dry run's (with its plan).
RESTORE = {'id': TEXT, 'status': TEXT, 'kinds': ListOf(TEXT),
           'ranges_done': INT, 'ranges_total': INT, 'by_kind': _BY_KIND,
           'entities': INT, 'deleted': INT, 'error': Maybe(TEXT),
           'plan': Opt(MapOf(MapOf(INT)))}

#: ``Snapshot.to_dict()``.
SNAPSHOT = {'id': INT, 'status': TEXT, 'kinds': ListOf(TEXT),
            'namespace': TEXT, 'batchsize': INT, 'codec': TEXT,
            'progress': {'ranges_done': INT, 'ranges_total': Maybe(INT),
                         'entities': INT, 'bytes': INT, 'by_kind': _BY_KIND},
            'range_counts': MapOf(Maybe(INT)),
            'range_spans': MapOf(Maybe(ListOf(ListOf(INT)))),
            'kind_entities': MapOf(Maybe(INT)), 'error': Maybe(TEXT),
            'created': Maybe(TEXT), 'modified': Maybe(TEXT),
            'restore': Maybe(RESTORE), 'plan': Maybe(RESTORE)}

#: A page of the listing.
PAGE = {'snapshots': ListOf(SNAPSHOT), 'next': Opt(TEXT)}

#: A restore's (or dry run's) start: its snapshot's id, and it.
STARTED = {'id': INT, 'dry_run': FLAG, 'restore': Opt(RESTORE),
           'plan': Opt(RESTORE)}

#: A delete's or a prune's: the ids deleted.
DELETED = {'deleted': ListOf(INT)}

#: A worker's run.
WORKER = {'ran': INT, 'queued': INT,
          'next': Opt({'task': TEXT, 'due': TEXT, 'due_in': NUMBER,
                       'held': FLAG})}

#: An upload's: the entities put.
UPLOADED = {'put': INT}
