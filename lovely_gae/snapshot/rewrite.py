"""Move entities to another app id or namespace, and mask them on the way.

A production snapshot holds keys of the production app (``s~myapp``); a
development datastore only finds entities of its own app id. Rewriting
sets the app id on each entity's key and on every reference inside its
properties. A new namespace applies to the keys and references that were in
the entity's own namespace; references into other namespaces stay there.
(``EntityProto.entity_group`` is a bare path, with neither app nor
namespace, so it needs no change.)
"""
import itertools

from ..entities import EntityProto

__all__ = ['rewrite_entity', 'Transform']


def _move(reference, app, source_namespace, namespace):
    if app is not None:
        reference.app = app
    if namespace is not None and reference.name_space == source_namespace:
        if namespace:
            reference.name_space = namespace
        else:
            # The datastore leaves the default namespace unset; so do we,
            # so that the bytes match what it writes itself.
            reference.ClearField('name_space')


def rewrite_entity(entity, app=None, namespace=None):
    """Move ``entity`` (an ``EntityProto``, changed in place) and return it."""
    source_namespace = entity.key.name_space
    _move(entity.key, app, source_namespace, namespace)
    for prop in itertools.chain(entity.property, entity.raw_property):
        if prop.value.HasField('referencevalue'):
            _move(prop.value.referencevalue, app, source_namespace,
                  namespace)
    return entity


class Transform:
    """What happens to each record on its way into a file or a datastore.

    ``scrub(entity)`` returns the ``EntityProto`` to write (changed or
    not) or None to drop it; it sees the entity after the rewrite. With
    nothing to do, records pass through as the exact bytes they were.
    """

    def __init__(self, app=None, namespace=None, scrub=None):
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

    def __call__(self, record):
        """The record bytes to write, or None."""
        if not self:
            return record
        entity = self.entity(EntityProto.FromString(record))
        return None if entity is None else entity.SerializeToString()
