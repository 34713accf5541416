"""The body of an upload request: entities as protocol buffers, never pickles.

``application/x-lovely-gae-entities`` is a run of records, each an encoded
``EntityProto`` preceded by its length as a varint: the records of
``storage.FORMAT``, uncompressed. Both sides parse them with protocol
buffers only.
"""
from .. import defaults
from ..entities import EntityProto
from . import storage

__all__ = ['CONTENT_TYPE', 'BATCH_BYTES', 'batches', 'decode',
           'check_entity']

CONTENT_TYPE = 'application/x-lovely-gae-entities'

#: Largest upload body a client sends: under App Engine's 1 MiB limit per
#: datastore request, with room for the request's own bytes.
BATCH_BYTES = 900 * 1024


def batches(records, batch_bytes=None):
    """Yield ``(body, count)``: bodies of at most ``batch_bytes``.

    A record larger than that on its own goes alone in a body.
    """
    limit = batch_bytes or BATCH_BYTES
    body, count = bytearray(), 0
    for record in records:
        item = storage.varint(len(record)) + record
        if body and len(body) + len(item) > limit:
            yield bytes(body), count
            body, count = bytearray(), 0
        body += item
        count += 1
    if body:
        yield bytes(body), count


def check_entity(entity):
    """Raise ValueError unless ``entity`` may be put as it is.

    Its key must be complete, and it must not be one of the library's own
    entities: a task written there would run as code.
    """
    path = entity.key.path.element
    if not path or any(not e.type or not (e.id or e.name) for e in path):
        raise ValueError('an entity has an incomplete key')
    if entity.key.name_space == defaults.NAMESPACE:
        raise ValueError('entities of namespace %r are the library\'s own'
                         % defaults.NAMESPACE)
    return entity


def decode(body):
    """The checked ``EntityProto`` messages of an upload body."""
    found = []
    try:
        for record in storage.iter_records([body], 'none'):
            found.append(check_entity(EntityProto.FromString(record)))
    except ValueError:
        raise
    except Exception as exc:  # protobuf's DecodeError and its kin
        raise ValueError('an entity cannot be decoded: %s' % exc) from exc
    return found
