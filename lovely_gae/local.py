"""The embedded default: a datastore in a local file, and a client over it.

``local_datastore`` serves the datastore API from a file in the format of
the SDK's ``DatastoreFileStub``, so that a development server loads it too.
The file is data, not code: it is read with the library's own parser of
that pickle, which never unpickles, and every record must decode as an
entity before any is used. It is saved the way a download is: a temporary
file beside it, fsync, rename (a save removes the temporary files one killed
outright left); with its id counters (``filestub.id_marks``:
no id comes twice). A lock beside it (``<file>.lock``) keeps two processes
from working on it at once. A symbolic link stands for the file
it leads to, which is locked, read and saved in its place; a file of more
than one name (hard links) is refused, as the rename would part them.

``LocalClient`` answers the same calls as ``transfer.remote.RemoteClient``,
with the same JSON-ready data (``snapshot.calls``); it runs the tasks they
queue in this process.
"""
import contextlib
import io
import json
import os
import re
import secrets
import time
from unittest import mock

from google.appengine.api import (datastore_errors, datastore_file_stub,
                                  namespace_manager)
from google.appengine.datastore import datastore_stub_util
from google.appengine.ext import testbed as testbed_module
from google.protobuf.message import DecodeError

from . import defaults, filestub
from .entities import EntityProto
from .exceptions import DatastoreFileError
from .filelock import FileLock

__all__ = ['TESTING_APP_ID', 'start_testbed', 'load_datastore',
           'local_datastore', 'LocalDatastore', 'save_datastore', 'drain',
           'LocalClient']

#: The app id of the tests' datastore (see ``lovely_gae.testing``).
TESTING_APP_ID = 'lovely-gae-testing'


def start_testbed(app_id=TESTING_APP_ID, root_path=None):
    """Activate and return a testbed with the datastore and memcache stubs.

    The datastore starts empty, applies every write at once (no eventual
    consistency), as a single local process expects, and reads a range of
    keys in the range's time (``filestub``), as production does. As
    production, it refuses a query that needs a composite index not
    declared in ``index.yaml`` (in ``root_path``; none without it): the
    library's own queries need none. It reads no datastore file: the SDK's
    stub would unpickle it (``local_datastore`` loads one through the
    library's own parser).
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
                                   require_indexes=True, root_path=root_path)
    bed.init_memcache_stub()
    namespace_manager.set_namespace('')
    return bed


def _checked_path(path):
    """The file ``path`` names, links followed, if it can be the datastore
    file: the one name that locks it and that a save replaces."""
    path = os.path.realpath(path)
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise DatastoreFileError(path, 'no such directory: %s' % directory)
    if os.path.isdir(path):
        raise DatastoreFileError(path, 'is a directory, not a file')
    if os.path.exists(path) and not os.path.isfile(path):
        raise DatastoreFileError(path, 'is not a regular file')
    links = os.stat(path).st_nlink if os.path.exists(path) else 1
    if links > 1:  # each name its lock; a save would leave the others
        raise DatastoreFileError(path, 'has %d names (hard links); use a '
                                 'file of one name' % links)
    return path


def _stored_record(number, data):
    """The stub's record of the ``number``-th entity of a file, checked."""
    try:
        entity = EntityProto.FromString(data)
        record = datastore_stub_util._FromStorageEntity(entity)
    except DecodeError:
        raise ValueError('record %d is not an entity' % number) from None
    path = entity.key.path.element
    if not (entity.IsInitialized() and entity.key.app and len(path)
            and all(e.type and (e.id or e.name) for e in path)):
        raise ValueError('record %d is not a complete entity' % number)
    if any(e.id < 0 for e in path):
        raise ValueError('record %d has a negative id' % number)
    return record


#: Entities loaded between two words to ``load_datastore``'s progress.
_LOAD_STEP = 2000


def load_datastore(stub, path, progress=None):
    """Put the entities of the file at ``path`` (if any) into ``stub``.

    What the SDK's ``DatastoreFileStub.Read`` does, but on records the
    library's own parser found: the SDK would unpickle the file.
    ``progress(done, total)`` is told the bytes read now and then.
    """
    from .snapshot.transfer.devfile import iter_entities, whole_key
    try:
        with open(path, 'rb') as fileobj:
            data = fileobj.read()
    except FileNotFoundError:
        return
    except OSError as error:
        raise DatastoreFileError(path, error.strerror or error) from error
    if not data:
        return  # as the SDK takes it: a datastore with nothing in it
    try:
        # In memory, so that a length in the file cannot ask for more.
        fileobj = io.BytesIO(data)
        for number, record in enumerate(iter_entities(fileobj), 1):
            if progress is not None and number % _LOAD_STEP == 0:
                progress(fileobj.tell(), len(data))
            record = _stored_record(number, record)
            if not whole_key(record.entity.key):  # the stub takes it as text
                raise ValueError('record %d has a key not in UTF-8' % number)
            stub._StoreRecord(record)
            last = record.entity.key.path.element[-1]
            if last.id:
                stub._SetMaxId(last.id)
    except (ValueError, datastore_errors.Error) as error:
        raise DatastoreFileError(path, error) from None
    if progress is not None:
        progress(len(data), len(data))


def save_datastore(stub, path):
    """Write the entities of ``stub`` to ``path``: temp file, fsync, rename.

    Raises ``DatastoreFileError`` if it cannot; ``path`` is then as it was.
    """
    from .snapshot.transfer.devfile import DevFileWriter, fsync_path
    stub.Flush()  # apply every commit, as the SDK's own Write does
    records = [entity.encoded_protobuf
               for (_, kind), by_key in stub._GetAllEntities().items()
               if kind != filestub.ID_MARK for entity in by_key.values()]
    records += filestub.id_marks(stub)
    directory, name = os.path.split(os.path.abspath(path))
    # Named before it exists, so that whatever interrupts (SIGTERM too)
    # can remove it: no temp file is left behind.
    temp_path = os.path.join(directory, _temp_name(
        name, secrets.token_hex(_TOKEN_BYTES)))
    try:
        fd = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            fileobj = os.fdopen(fd, 'wb')
        except BaseException:
            os.close(fd)
            raise
        with fileobj:
            writer = DevFileWriter(fileobj)
            writer.add_many(records)
            writer.close()
            fileobj.flush()
            os.fsync(fileobj.fileno())
        os.replace(temp_path, path)
        fsync_path(directory, os.O_DIRECTORY)
    except BaseException as error:
        if not isinstance(error, FileExistsError):  # not ours to remove
            with contextlib.suppress(OSError):
                os.unlink(temp_path)
        if isinstance(error, OSError):
            raise DatastoreFileError(path, 'cannot save: %s' % (
                error.strerror or error)) from error
        raise


#: Random bytes in the name of a save's temporary file.
_TOKEN_BYTES = 8


def _temp_name(name, token):
    """The name of a temporary file of a save of ``name``."""
    return '.%s.%s.tmp' % (name, token)


def _remove_stale_temps(path):
    """Remove what saves of ``path`` that were killed outright (kill -9, a
    power cut: no handler ran) left of their temporary files. The caller
    has just taken the file's lock exclusively: no save of it is under
    way, and those there are from before it."""
    directory, name = os.path.split(os.path.abspath(path))
    stale = re.compile(re.escape(_temp_name(name, '')[:-len('.tmp')])
                       + '[0-9a-f]{%d}' % (2 * _TOKEN_BYTES)
                       + re.escape('.tmp'))
    with contextlib.suppress(OSError), os.scandir(directory) as found:
        for entry in found:
            if (stale.fullmatch(entry.name)
                    and entry.is_file(follow_symlinks=False)):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


class LocalDatastore:
    """A datastore file in use: its ``path``, the ``stub`` serving it."""

    def __init__(self, path, stub, lock):
        self.path, self.stub, self._lock = path, stub, lock
        self._saved = stub._GetReadTimestamp()

    def changed(self):
        """Whether anything was written since the file was read or saved."""
        return self.stub._GetReadTimestamp() != self._saved

    def save(self):
        """Save the file if anything changed; True if it was written.

        Raises ``DatastoreFileError`` if it cannot be saved; the file is
        then as it was, and a later call tries again.
        """
        stamp = self.stub._GetReadTimestamp()
        if stamp == self._saved:
            return False
        save_datastore(self.stub, self.path)
        self._saved = stamp
        return True

    def note(self, **info):
        """Tell a process that finds the file locked about us (``url``)."""
        self._lock.note(**info)


@contextlib.contextmanager
def local_datastore(path=defaults.DATASTORE_FILE, app_id=None, save=True,
                    command=None, progress=None, must_exist=False):
    """Serve the datastore API from the file at ``path`` while inside.

    Yields a ``LocalDatastore``. With ``save`` the block holds the file's
    lock exclusively and saves the file when it ends without an error;
    without, it only reads, and shares the lock with other readers.
    ``command`` names this process to one the lock keeps out. A link at
    ``path`` stands for the file it leads to. ``progress`` is told how
    loading the file goes (``load_datastore``). With ``must_exist`` a
    missing file is an error, and nothing is created.
    """
    app_id = (app_id or os.environ.get('GAE_APPLICATION')
              or defaults.LOCAL_APP_ID)
    path = _checked_path(path)
    if must_exist and not os.path.exists(path + defaults.LOCK_SUFFIX):
        _must_exist(path)  # no lock file to leave behind for nothing
    lock = FileLock(path, exclusive=save, command=command)
    try:
        if save:
            _remove_stale_temps(path)
        if must_exist:
            _must_exist(path)  # a writer that held the lock may have saved
        bed = start_testbed(app_id=app_id)
        try:
            load_datastore(bed.get_stub('datastore_v3'), path, progress)
            datastore = LocalDatastore(path, bed.get_stub('datastore_v3'),
                                       lock)
            yield datastore
            if save:
                datastore.save()
        finally:
            bed.deactivate()
    finally:  # a refused first command leaves no lock file behind
        lock.release(remove=not os.path.exists(path))


def _must_exist(path):
    if not os.path.exists(path):  # an empty one would hide a misspelling
        raise DatastoreFileError(path, 'does not exist; a command that '
                                 'changes the datastore creates it, '
                                 '"lovely-gae demo" fills one')


def _deleted(call, *args):
    """``call(*args)``, which deletes, its tasks run to the end. The file
    is this process's alone (its lock), so no task of a deleted snapshot is
    in flight elsewhere: its last purge runs at once, not a lease later
    (``ranges.LAST_PURGE_SECONDS``)."""
    from .snapshot.work import ranges
    with mock.patch.object(ranges, 'LAST_PURGE_SECONDS', 0):
        result = call(*args)
    drain()
    return _sent(result)


def drain():
    """Run every queued task, waiting out retries, until none is left."""
    from .async_ import run_tasks
    return run_tasks(recursive=True, wait=True)


def _sent(data):  # ``data`` as the app's JSON answer of it reads back
    return json.loads(json.dumps(data))


class LocalClient:
    """The library on the datastore this process sees, as the CLI calls it.

    Its calls return what the app's endpoints answer (``snapshot.calls``),
    as the JSON they send reads back (lists, not tuples); the tasks they
    queue run in this process, while it waits for them (``pause``) or in
    ``run_worker``.
    """

    #: Seconds of tasks run between two looks at the work waited for.
    poll_seconds = 0.5

    def __init__(self):
        from .snapshot import api, calls
        self.api, self.calls = api, calls

    def list_snapshots(self, limit=None):
        return _sent(self.calls.every_snapshot(limit))

    def get_snapshot(self, snapshot_id):
        return _sent(self.calls.get_snapshot(snapshot_id))

    def create_snapshot(self, kinds=None, batchsize=None, namespace=None,
                        allow_empty=True):
        return _sent(self.calls.create_snapshot(kinds, batchsize, namespace,
                                                allow_empty=allow_empty))

    def restore_snapshot(self, snapshot_id, kinds=None, dry_run=False):
        return _sent(self.calls.restore_snapshot(
            self.api.get_snapshot(snapshot_id), kinds=kinds, dry_run=dry_run))

    def get_restore(self, snapshot_id, restore_id):
        return _sent(self.calls.get_restore(snapshot_id, restore_id))

    def delete_snapshot(self, snapshot_id):
        return _deleted(self.calls.delete_snapshot,
                        self.api.get_snapshot(snapshot_id))

    def prune(self, keep, only=None):
        return _deleted(self.calls.prune, keep, only)

    def run_worker(self, seconds=None, wait=False, threads=1):
        from .async_ import run_in_threads
        ran = run_in_threads(threads, recursive=True, wait=wait,
                             deadline=seconds)
        return _sent(self.calls.worker_ran(ran))

    def pause(self, seconds):
        """Run the due tasks for about ``seconds``; sleep if none is due."""
        from .async_ import run_tasks
        started = time.monotonic()
        if not run_tasks(recursive=True, deadline=seconds):
            time.sleep(max(0.0, min(0.05, seconds - (time.monotonic()
                                                     - started))))
