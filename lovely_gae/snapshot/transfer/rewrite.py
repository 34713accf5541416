"""Move entities to another app id or namespace, and mask them on the way.

A production snapshot holds keys of the production app (``s~myapp``); a
development datastore only finds entities of its own app id. Rewriting
sets the app id on each entity's key and on every reference inside its
properties that points into the entity's own app; references to other
apps stay as they are. A new namespace applies to the keys and references
that were in the entity's own namespace (of its own app); references into
other namespaces stay there. References inside structured values stored
as entities (ndb's ``LocalStructuredProperty``, uncompressed) move too,
at any depth. (``EntityProto.entity_group`` is a bare path, with neither
app nor namespace, so it needs no change.)

What is stored as opaque bytes cannot be rewritten: compressed structured
values (``compressed=True``), pickles, JSON, and keys kept as strings.
"""
import difflib
import hashlib
import hmac
import re
import secrets

from google.appengine.datastore.entity_bytes_pb2 import Property
from google.protobuf.message import DecodeError

from ...entities import EntityProto
from ...exceptions import BadEntity, InvalidInput, MaskUnmatched
from .wire import is_namespace

__all__ = ['rewrite_entity', 'Transform', 'Mask']

#: Structured values nested deeper than this are refused, not rewritten.
MAX_DEPTH = 100

_ENTITY_PROTO = Property.ENTITY_PROTO


class _Move:
    """Where the references of one entity's own app and namespace go."""

    def __init__(self, key, app, namespace):
        self.own_app, self.own_namespace = key.app, key.name_space
        self.app, self.namespace = app, namespace

    def reference(self, reference):
        """Move ``reference`` if it is of the entity's own app; True if it
        changed."""
        if reference.app != self.own_app:
            return False  # another app's entity stays where it is
        changed = False
        if self.app is not None and reference.app != self.app:
            reference.app = self.app
            changed = True
        namespace = self.namespace
        if namespace is None or reference.name_space != self.own_namespace:
            return changed
        if namespace and reference.name_space != namespace:
            reference.name_space = namespace
            return True
        if not namespace and reference.HasField('name_space'):
            # The datastore leaves the default namespace unset; so do we,
            # so that the bytes match what it writes itself.
            reference.ClearField('name_space')
            return True
        return changed

    def properties(self, entity, depth=0):
        """Move the references in ``entity``'s properties; True if any."""
        changed = False
        for prop in entity.property:  # indexed: never a structured value
            value = prop.value
            if value.HasField('referencevalue'):
                changed |= self.reference(value.referencevalue)
        for prop in entity.raw_property:
            value = prop.value
            if value.HasField('referencevalue'):
                changed |= self.reference(value.referencevalue)
            elif (prop.meaning == _ENTITY_PROTO
                  and value.HasField('stringValue')):
                changed |= self.structured(value, depth + 1)
        return changed

    def structured(self, value, depth):
        """Move the references inside a structured value; its bytes stay
        as they were unless one moved."""
        if depth > MAX_DEPTH:
            raise BadEntity('structured values nested deeper than %d levels'
                            % MAX_DEPTH)
        try:
            inner = EntityProto.FromString(value.stringValue)
        except DecodeError:
            return False  # not an entity after all: bytes we cannot read
        changed = inner.HasField('key') and self.reference(inner.key)
        changed = self.properties(inner, depth) or changed
        if changed:
            # ndb writes sub-entities partially (without a key, often).
            value.stringValue = inner.SerializePartialToString()
        return changed


def rewrite_entity(entity, app=None, namespace=None):
    """Move ``entity`` (an ``EntityProto``, changed in place) and return it."""
    move = _Move(entity.key, app, namespace)
    move.reference(entity.key)
    move.properties(entity)
    return entity


def _check_target(app, namespace):
    """Raise ``InvalidInput`` unless ``app`` and ``namespace`` (None: not
    moved) are an app id and a namespace the datastore takes: else the
    keys moved there would be refused, or never found."""
    if app is not None:
        from google.appengine.api.appinfo import APPLICATION_RE_STRING
        if not re.fullmatch(APPLICATION_RE_STRING, app):
            raise InvalidInput('target_app_id', app,
                               'not an app id, such as dev~my-app')
    if namespace is not None and not is_namespace(namespace):
        raise InvalidInput('target_namespace', namespace, 'not a namespace '
                           'the datastore takes (at most 100 letters, '
                           'digits, ".", "-" and "_")')


class Transform:
    """What happens to each record on its way into a file or a datastore.

    ``scrub(entity)`` returns the ``EntityProto`` to write (changed or
    not) or None to drop it; it sees the entity after the rewrite. A
    transform with nothing to do is false: records can pass as they are.
    """

    def __init__(self, app=None, namespace=None, scrub=None):
        _check_target(app, namespace)  # made before anything is read
        self.app, self.namespace, self.scrub = app, namespace, scrub

    def __bool__(self):
        return not (self.app is None and self.namespace is None
                    and self.scrub is None)

    def entity(self, entity):
        """The entity to write, or None."""
        rewrite_entity(entity, self.app, self.namespace)
        if self.scrub is not None:
            entity = self.scrub(entity)
        return entity

    def check(self):
        """Once every entity has passed, before the file gets its name:
        the scrub's ``check()``, if it has one; what that raises leaves
        nothing written."""
        check = getattr(self.scrub, 'check', None)
        if check is not None:
            check()


#: Meanings of strings that any text may stand in for; a string of another
#: meaning (a link, a date, a structured value) would not read back.
_PLAIN = frozenset([0, Property.TEXT, Property.BLOB, Property.BYTESTRING,
                    Property.GD_EMAIL, Property.GD_PHONENUMBER,
                    Property.GD_POSTALADDRESS, Property.ATOM_CATEGORY])


#: Property names a ``Mask`` remembers (to match faster, and to suggest
#: one for a mask that matched nothing); and how many an error lists.
_SEEN_MAX = 10000
_SHOWN = 12


class Mask:
    """A ``scrub`` that masks properties: ``Mask(['email', 'User.phone'])``.

    A name masks the property of that name of every kind, and the field of
    that name of a structured property (ndb stores ``contact.email``);
    ``KIND.PROPERTY`` masks it in one kind (a name ``contact.email`` masks
    that field, and ``email`` of kind ``contact``). Each plain string
    value (text, bytes, an email, a phone number, an address) of a masked
    property becomes ``masked-`` and 16 hex digits of an HMAC of the value
    under a key made for this ``Mask``: equal values stay equal (lookups
    and joins still work) and none can be found from its mask, not even by
    trying likely values. Any other value (a number, a date, a link, a key,
    a structured value) becomes null. Keys, and what is stored as opaque
    bytes inside other values, are not masked.

    ``unmatched()`` says which names have masked nothing so far, and
    ``check()`` (which a download calls before the file gets its name)
    raises ``MaskUnmatched`` if any has: a misspelt name would leave the
    data it meant in the clear. With ``allow_unmatched`` it does not (a
    standing list of masks over snapshots that may lack some kinds). Both
    count every entity this ``Mask`` has seen, so a ``Mask`` reused for a
    second file (to mask it alike) answers for both together.
    """

    def __init__(self, names, allow_unmatched=False):
        for name in names:
            if not name.rpartition('.')[2]:
                raise InvalidInput('mask', name, 'names no property')
        self._names = frozenset(names)
        self._matched = set()
        self._key = secrets.token_bytes(32)
        self.allow_unmatched = allow_unmatched
        self._seen = {}  # (kind, property name): the mask names it matches

    def _names_of(self, kind, name):
        """The mask names that match property ``name`` of ``kind``."""
        names = self._seen.get((kind, name))
        if names is None:
            candidates = {name, '%s.%s' % (kind, name)}
            candidates.update(name[dot + 1:] for dot in range(len(name))
                              if name[dot] == '.')
            names = self._names & candidates
            if len(self._seen) < _SEEN_MAX:  # expando kinds may have many
                self._seen[kind, name] = names
        return names

    def unmatched(self):
        return sorted(self._names - self._matched)

    def check(self):
        """``MaskUnmatched`` if a name has matched nothing, unless
        ``allow_unmatched``."""
        unmatched = self.unmatched()
        if not unmatched or self.allow_unmatched:
            return
        pool = set()
        for kind, name in self._seen:
            pool.update((name, name.rpartition('.')[2],
                         '%s.%s' % (kind, name)))
        suggestions = {}
        for name in unmatched:
            close = difflib.get_close_matches(name, pool, 1, 0.75)
            if close:
                suggestions[name] = close[0]
        written = sorted({name for _, name in self._seen})
        if len(written) > _SHOWN:
            written = written[:_SHOWN] + ['...']
        raise MaskUnmatched(unmatched, suggestions, written)

    def __call__(self, entity):
        kind = entity.key.path.element[-1].type
        for prop in list(entity.property) + list(entity.raw_property):
            names = self._names_of(kind, prop.name)
            if not names or prop.meaning == Property.EMPTY_LIST:
                continue
            self._matched.update(names)
            value = prop.value
            if value.HasField('stringValue') and prop.meaning in _PLAIN:
                digest = hmac.new(self._key, value.stringValue,
                                  hashlib.sha256).hexdigest()[:16]
                value.stringValue = b'masked-' + digest.encode()
            else:
                value.Clear()
                prop.ClearField('meaning')
        return entity
