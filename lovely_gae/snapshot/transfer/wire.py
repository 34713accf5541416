"""The body of an upload request: entities as protocol buffers, never pickles.

``application/x-lovely-gae-entities`` is a run of records, each an encoded
``EntityProto`` preceded by its length as a varint: the records of
``storage.FORMAT``, uncompressed. Both sides parse them with protocol
buffers only, and check each entity with ``check_entity``.
"""
import re

from google.appengine.api import datastore_types
from google.appengine.datastore.entity_bytes_pb2 import Property as _Property

from ... import defaults
from ...entities import EntityProto
from ...exceptions import BadEntity, LovelyGaeError
from .. import storage

__all__ = ['CONTENT_TYPE', 'BATCH_BYTES', 'batches', 'decode',
           'check_entity', 'check_key', 'is_namespace']

CONTENT_TYPE = 'application/x-lovely-gae-entities'

#: Largest upload body a client sends: under App Engine's 1 MiB limit per
#: datastore request, with room for the request's own bytes.
BATCH_BYTES = 900 * 1024

#: Meanings whose string values are bytes, not text; the first three are
#: the ones the datastore keeps only unindexed.
_BLOBS = frozenset([_Property.BLOB, _Property.TEXT, _Property.ENTITY_PROTO])
_BYTES = _BLOBS | {_Property.BYTESTRING}
#: Kinds the datastore keeps for itself, and the longest kind or name.
_RESERVED = re.compile(r'__.*__', re.DOTALL)
_NAME = defaults.MAX_NAME_BYTES
#: Namespaces the datastore takes (``namespace_manager``'s rule).
_NAMESPACE = re.compile(r'[0-9A-Za-z._-]{0,100}')
_USER_TEXT = ('email', 'auth_domain', 'nickname', 'obfuscated_gaiaid',
              'federated_identity', 'federated_provider')


def batches(records, batch_bytes=None):
    """Yield ``(body, count)``: bodies of at most ``batch_bytes``, and of
    at most ``defaults.MAX_REQUEST_ENTITIES`` records.

    A record larger than ``batch_bytes`` on its own goes alone in a body.
    """
    limit = batch_bytes or BATCH_BYTES
    most = defaults.MAX_REQUEST_ENTITIES
    body, count = bytearray(), 0
    for record in records:
        item = storage.varint(len(record)) + record
        if body and (len(body) + len(item) > limit or count == most):
            yield bytes(body), count
            body, count = bytearray(), 0
        body += item
        count += 1
    if body:
        yield bytes(body), count


def _text(value, what):
    # A string field that is not UTF-8 comes out of protobuf as bytes.
    if not isinstance(value, str):
        raise BadEntity('%s is not UTF-8: %r' % (what, value[:40]))
    return value


def _check_path(elements, what):
    if not elements:
        raise BadEntity('%s has an empty path' % what)
    for element in elements:
        kind = _text(element.type, what + ' kind')
        if not kind:
            raise BadEntity('%s is incomplete' % what)
        if _RESERVED.fullmatch(kind) or len(element.type.encode()) > _NAME:
            raise BadEntity('%s has kind %r, which the datastore keeps for '
                            'itself or finds too long' % (what, kind[:40]))
        if element.HasField('name'):
            name = _text(element.name, what + ' name')
            if element.HasField('id') or not name:
                raise BadEntity('%s has an element with an id and a name, '
                                'or an empty name' % what)
            if len(name.encode()) > _NAME:
                raise BadEntity('%s has a name longer than %d bytes'
                                % (what, _NAME))
        elif element.id <= 0:
            raise BadEntity('%s is incomplete, or its id %d is not positive'
                            % (what, element.id) if element.id else
                            '%s is incomplete' % what)


def _check_reference(reference, what, elements):
    for field in ('app', 'name_space', 'database_id'):
        _text(getattr(reference, field), '%s %s' % (what, field))
    if not _NAMESPACE.fullmatch(reference.name_space):
        raise BadEntity('%s has namespace %r, which is not one the datastore '
                        'takes' % (what, reference.name_space[:120]))
    _check_path(elements, what)


def is_namespace(text):
    """Whether the datastore takes ``text`` for a namespace."""
    return bool(_NAMESPACE.fullmatch(text))


def check_key(key):
    """Raise ``BadEntity`` unless ``key`` (a ``Reference``) is complete,
    one the datastore takes (kinds, names, ids, namespace), and not of the
    library's own namespace."""
    _check_reference(key, 'a key', key.path.element)
    if key.name_space == defaults.NAMESPACE:
        raise BadEntity('entities of namespace %r are the library\'s own'
                        % defaults.NAMESPACE)


def _check_value(value, name, meaning, max_length):
    fields = value.ListFields()
    if len(fields) > 1:
        raise BadEntity('property %s has several values in one' % name)
    field = fields[0][0].name if fields else None
    if field == 'stringValue':
        if len(value.stringValue) > max_length:
            raise BadEntity('property %s is longer than %d bytes'
                            % (name, max_length))
        if meaning not in _BYTES:
            try:
                value.stringValue.decode('utf-8')
            except UnicodeDecodeError:
                raise BadEntity('property %s is text, but not UTF-8'
                                % name) from None
    elif field == 'referencevalue':
        reference = value.referencevalue
        _check_reference(reference, 'a reference in ' + name,
                         reference.pathelement)
    elif field == 'uservalue':
        for field in _USER_TEXT:
            _text(getattr(value.uservalue, field), 'a user in ' + name)


def _check_property(prop, indexed):
    name = _text(prop.name, 'a property name')
    if not name or datastore_types.RESERVED_PROPERTY_NAME.match(name):
        raise BadEntity('property name %r is reserved' % name)
    _text(prop.meaning_uri, 'property %s meaning_uri' % name)
    meaning = prop.meaning
    if meaning == _Property.INDEX_VALUE:
        raise BadEntity('property %s is an index value' % name)
    if indexed:
        if meaning in _BLOBS:
            raise BadEntity('property %s is a blob, but indexed' % name)
        max_length = datastore_types._MAX_STRING_LENGTH
    else:
        if meaning in _BLOBS and not prop.value.HasField('stringValue'):
            raise BadEntity('blob property %s has no bytes' % name)
        max_length = datastore_types._MAX_RAW_PROPERTY_BYTES
    if meaning == _Property.ATOM_LINK:
        max_length = datastore_types._MAX_LINK_PROPERTY_LENGTH
    _check_value(prop.value, name, meaning, max_length)


def check_entity(entity):
    """Raise ``BadEntity`` unless ``entity`` may be put as it is.

    What the SDK's datastore checks on a put (``datastore_stub_util``'s
    ``CheckEntity``), and more: every field it requires, a complete key,
    text fields in UTF-8, at most ``defaults.MAX_ENTITY_BYTES`` bytes, and
    none of the library's own entities (a task written there runs as code).
    """
    if not entity.IsInitialized():
        raise BadEntity('an entity lacks %s' % ', '.join(
            entity.FindInitializationErrors()))
    check_key(entity.key)
    for prop in entity.property:
        _check_property(prop, indexed=True)
    for prop in entity.raw_property:
        _check_property(prop, indexed=False)
    if entity.ByteSize() > defaults.MAX_ENTITY_BYTES:
        raise BadEntity('an entity is larger than %d bytes'
                        % defaults.MAX_ENTITY_BYTES)
    return entity


def decode(body):
    """The checked ``EntityProto`` messages of an upload body.

    ``BadStoredRange`` if its records cannot be told apart, ``BadEntity``
    if one is not an entity that may be put.
    """
    found = []
    try:
        for record in storage.iter_records([body], 'none'):
            found.append(check_entity(EntityProto.FromString(record)))
    except LovelyGaeError:
        raise
    except Exception as exc:  # protobuf's DecodeError and its kin
        raise BadEntity('an entity cannot be decoded: %s' % exc) from exc
    return found
