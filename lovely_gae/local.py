"""The embedded default: a datastore in a local file, and a client over it.

``local_datastore`` serves the datastore API from a file that the SDK's
``DatastoreFileStub`` opens and saves. ``LocalClient`` answers the same
calls as ``snapshot.remote.RemoteClient``, with the same JSON-ready data,
but runs every task a call queues before it returns.
"""
import contextlib
import logging
import os
from unittest import mock

from google.appengine.api import namespace_manager
from google.appengine.api import datastore_file_stub
from google.appengine.datastore import datastore_stub_util
from google.appengine.ext import testbed as testbed_module

from . import filestub
from .exceptions import LovelyGaeError

__all__ = ['DEFAULT_DATASTORE', 'DEFAULT_APP_ID', 'TESTING_APP_ID',
           'start_testbed',
           'local_datastore', 'save_datastore', 'drain', 'LocalClient']

#: The datastore file the command line uses unless told otherwise.
DEFAULT_DATASTORE = './lovely-gae.datastore'

#: App id of a local datastore when neither ``--app-id`` nor
#: ``$GAE_APPLICATION`` gives one.
DEFAULT_APP_ID = 'lovely-gae-local'
#: The app id of the tests' datastore (see ``lovely_gae.testing``).
TESTING_APP_ID = 'lovely-gae-testing'


def start_testbed(app_id=TESTING_APP_ID, datastore_file=None,
                  **stub_kwargs):
    """Activate and return a testbed with the datastore and memcache stubs.

    The datastore applies every write at once (no eventual consistency), as
    a single local process expects, and reads a range of keys in the
    range's time (``filestub``), as production does.
    """
    bed = testbed_module.Testbed()
    bed.activate()
    bed.setup_env(app_id=app_id, overwrite=True)
    policy = datastore_stub_util.PseudoRandomHRConsistencyPolicy(
        probability=1)
    # The testbed makes the SDK's stub by this name: ours, the one time.
    with mock.patch.object(datastore_file_stub, 'DatastoreFileStub',
                           filestub.DatastoreFileStub):
        bed.init_datastore_v3_stub(consistency_policy=policy,
                                   datastore_file=datastore_file,
                                   **stub_kwargs)
    bed.init_memcache_stub()
    namespace_manager.set_namespace('')
    return bed


def save_datastore(stub):
    """Write the stub's entities to its file (temporary name, then rename)."""
    stub._DatastoreFileStub__save_changes = True
    try:
        stub.Write()
    finally:
        stub._DatastoreFileStub__save_changes = False


@contextlib.contextmanager
def local_datastore(path, app_id=None, save=True):
    """Serve the datastore API from the file at ``path`` while inside.

    Yields the ``DatastoreFileStub``. With ``save`` the file is written
    back when the block ends without an error.
    """
    app_id = app_id or os.environ.get('GAE_APPLICATION') or DEFAULT_APP_ID
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise LovelyGaeError('no such directory for --datastore: %s'
                             % directory)
    if not os.path.exists(path):
        # A new file is the normal start; the SDK warns about it anyway.
        logging.getLogger('google.appengine.api.stubs.datastore').setLevel(
            logging.ERROR)
    bed = start_testbed(app_id=app_id, datastore_file=path,
                        save_changes=False)
    stub = bed.get_stub('datastore_v3')
    try:
        yield stub
        if save:
            save_datastore(stub)
    finally:
        bed.deactivate()


def drain():
    """Run every queued task, waiting out retries, until none is left."""
    from .async_ import run_tasks
    return run_tasks(recursive=True, wait=True)


class LocalClient:
    """The library on the datastore this process sees, as the CLI calls it."""

    #: Calls return when the tasks they queued have all run.
    waits = True

    def __init__(self):
        from .snapshot import api
        self.api = api

    def list_snapshots(self, limit=None):
        return [snap.to_dict() for snap in self.api.list_snapshots(limit)]

    def get_snapshot(self, snapshot_id):
        return self.api.get_snapshot(snapshot_id).to_dict()

    def create_snapshot(self, kinds=None, batchsize=None, namespace=None):
        snap = self.api.create_snapshot(kinds, batchsize, namespace)
        drain()
        return self.get_snapshot(snap.id)

    def restore_snapshot(self, snapshot_id, kinds=None, dry_run=False):
        snap = self.api.get_snapshot(snapshot_id)
        plan = snap.restore(kinds=kinds, dry_run=dry_run)
        if dry_run:
            return {'id': snap.id, 'dry_run': True, 'plan': plan}
        drain()
        return {'id': snap.id, 'dry_run': False, 'restore':
                self.api.get_snapshot(snap.id).restore_progress()}

    def delete_snapshot(self, snapshot_id):
        snap = self.api.get_snapshot(snapshot_id)
        snap.delete()
        drain()
        return {'deleted': [snap.id]}

    def prune(self, keep):
        deleted = self.api.prune(keep)
        drain()
        return {'deleted': deleted}

    def run_worker(self, seconds=None, wait=False):
        from .async_ import run_tasks
        from .snapshot.worker import queued
        ran = run_tasks(recursive=True, wait=wait, deadline=seconds)
        return {'ran': ran, 'queued': queued()}

    def wait(self, snapshot_id, restore=False, **kwargs):
        return self.get_snapshot(snapshot_id)  # done before the call returned
