"""ndb's cache of the entities the library writes behind ndb's back.

ndb keeps entities in memcache, under ``NDB9:`` and the key's urlsafe form
in the key's namespace, with no expiry. A restore or an upload writes by
raw RPC, so without this an ndb app would go on reading the old entity, or
one that was deleted. Around each write, as ndb does around its own puts,
every key is first locked in memcache (a reader that finds the lock reads
the datastore and caches nothing), then its entry is deleted.

An app that changed ndb's ``Context._memcache_prefix`` is not covered.
"""
import contextlib
import logging

from google.appengine.api import apiproxy_stub_map, memcache
from google.appengine.ext.ndb import context as ndb_context
from google.appengine.ext.ndb import key as ndb_key

__all__ = ['lock', 'release', 'uncached']

log = logging.getLogger(__name__)


def _cache_keys(references):
    """``{namespace: [memcache key, ...]}`` of ndb's entries for references."""
    found = {}
    prefix = ndb_context.Context._memcache_prefix
    for reference in references:
        key = ndb_key.Key(reference=reference)
        found.setdefault(key.namespace(), []).append(prefix + key.urlsafe())
    return found


def lock(references):
    """Lock ndb's cache entries of ``references``; ``release`` them once
    written. Without a memcache service (a testbed that has none) there is
    no cache to keep right, and nothing is done."""
    if apiproxy_stub_map.apiproxy.GetStub('memcache') is None:
        return {}
    found = _cache_keys(references)
    for namespace, keys in found.items():
        memcache.set_multi(dict.fromkeys(keys, ndb_context._LOCKED),
                           time=ndb_context._LOCK_TIME, namespace=namespace)
    return found


def release(locked):
    """Drop the entries ``lock`` locked: ndb reads them anew."""
    for namespace, keys in locked.items():
        if not memcache.delete_multi(keys, namespace=namespace):
            log.warning('memcache did not drop ndb\'s entries of %d keys in '
                        'namespace %r; they expire in %d seconds', len(keys),
                        namespace, ndb_context._LOCK_TIME)


@contextlib.contextmanager
def uncached(references):
    """Lock ndb's cache entries of ``references`` while inside; then drop
    them."""
    locked = lock(references)
    yield
    release(locked)
