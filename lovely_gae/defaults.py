"""Every default of the library, in one place."""
import os

#: Namespace that holds the library's own entities (snapshots, range
#: backups, tasks), so that they never mix with an application's kinds.
NAMESPACE = 'lovely_gae'

# The datastore's own limits (Firestore in Datastore mode), which every
# request the library makes or accepts stays within.

#: Bytes of one entity at most, as the datastore counts an encoded entity.
MAX_ENTITY_BYTES = 1048572

#: Entities one put, get or delete request carries at most.
MAX_REQUEST_ENTITIES = 500

#: Bytes of one datastore API request at most.
MAX_REQUEST_BYTES = 1024 * 1024

#: Bytes of a kind or of a key's name at most, as UTF-8.
MAX_NAME_BYTES = 1500

#: Bytes one transaction may write at most.
MAX_TRANSACTION_BYTES = 10 * 1024 * 1024

#: Entity groups one cross-group transaction may span.
MAX_TRANSACTION_GROUPS = 25

#: Entities per range: a snapshot stores each kind in ranges of this size.
BATCH_SIZE = 200

#: Largest stored part of a range backup, in bytes; stays well below the
#: datastore's 1,048,572 bytes per entity and 1 MiB per API request.
PART_SIZE = 900 * 1024

#: Codec that compresses new range backups (see ``snapshot.storage.CODECS``).
CODEC = 'bz2'

#: Seconds a worker holds a task before another worker may take it over.
LEASE_SECONDS = 600

#: Times a task is tried before it stays in the datastore as failed.
MAX_ATTEMPTS = 8

#: Seconds before the first retry of a failed task; doubled on each retry.
RETRY_DELAY = 0.5

#: Longest wait between two tries of a task, in seconds.
MAX_RETRY_DELAY = 300.0

#: Tasks fetched per query by a worker.
TASK_BATCH = 100

#: Entities per datastore query batch (reading a range, listing the
#: library's own entities).
QUERY_BATCH = 500

#: Shards a large kind is cut into at most, each stored by a task of its
#: own at once: set it to the push queue's ``max_concurrent_requests``.
#: Each shard costs a task and a few datastore calls of its own.
SHARDS = 8

#: Seconds one task of a key pass or of a shard works; it then goes on in
#: a task of its own, so that each stays well inside a request's deadline.
PASS_SECONDS = 30.0

#: App Engine push queue that hands each stored task to a worker (see
#: ``push``); ``queue.yaml`` sets its rate and concurrency.
PUSH_QUEUE = 'lovely-gae'

#: Push tasks to App Engine's task queue: None, only when running on App
#: Engine; True or False, always or never.
PUSH = None

#: Seconds a task must be overdue before the sweeper (``run_tasks``) takes
#: it, while pushes hand out tasks: its push gets it first.
SWEEP_GRACE = 120.0

#: The environment variable that holds the bearer token: the app requires
#: it, the client and the command line send it, pushes carry it.
TOKEN_ENV = 'LOVELY_GAE_TOKEN'

#: The environment variable that turns token-only mode on: App Engine's
#: cron and queue headers then open nothing (see docs/security.rst).
TOKEN_ONLY_ENV = 'LOVELY_GAE_TOKEN_ONLY'

#: The local datastore file the command line uses unless told otherwise.
DATASTORE_FILE = './lovely-gae.datastore'

#: What the lock file beside a local datastore file adds to its name.
LOCK_SUFFIX = '.lock'

#: App id of a local datastore when neither ``--app-id`` nor
#: ``$GAE_APPLICATION`` gives one.
LOCAL_APP_ID = 'lovely-gae-local'

#: Seconds a session of the HTML page lasts from its login.
SESSION_SECONDS = 8 * 3600


def on_app_engine():
    """Whether this process runs on App Engine (standard environment),
    which decides ``PUSH`` and whom the app lets in (``access``)."""
    return os.environ.get('GAE_ENV', '').startswith('standard')
