"""A pytest plugin for tests of apps that use lovely_gae.

Installed with the package (entry point ``pytest11``), it offers:

- ``gae_testbed``: an activated App Engine testbed (app id
  ``lovely-gae-testing``) with the datastore stub, whose consistency policy
  always applies writes, and the memcache stub; as in production, a query
  that needs a composite index fails unless the ``index.yaml`` at pytest's
  root directory declares it;
- ``run_tasks``: ``lovely_gae.async_.run_tasks``, with the testbed active;
- ``task_clock``: a ``Clock`` to pass as ``run_tasks(clock=...)``: tests
  advance it past retries, countdowns and leases instead of sleeping;
- ``snapshot_server``: the snapshot app on a real HTTP server (waitress) on
  a loopback port, on the testbed's datastore, requiring a bearer token
  from every caller (App Engine's headers count for nothing, even with
  ``GAE_ENV`` set): ``snapshot_server.url`` and ``snapshot_server.token``.

It also offers ``rerun(task)``, which runs a task once more as its retry
would.
"""
import datetime
import secrets

import pytest

from . import async_
from .local import start_testbed

__all__ = ['Clock', 'rerun', 'start_testbed', 'gae_testbed',
           'run_tasks', 'task_clock', 'snapshot_server']


class Clock(async_.Clock):
    """Real time plus what the test advanced it by; ``sleep`` advances it
    and returns at once."""

    #: A worker waiting for tasks sleeps until the next is due: its sleep
    #: takes no time, so nothing could be queued meanwhile.
    poll_seconds = float('inf')

    def __init__(self):
        self.ahead = datetime.timedelta()

    def now(self):
        return super().now() + self.ahead

    def sleep(self, seconds):
        self.advance(seconds)

    def advance(self, seconds):
        """Move the clock ``seconds`` on."""
        self.ahead += datetime.timedelta(seconds=seconds)


def rerun(task):
    """Run ``task`` (as ``async_.get_tasks`` shows it) once more, as its
    retry would: the registered function it names, with its arguments.
    What it raises propagates; the queue is left as it is."""
    args, kwargs = task.arguments()
    async_.resolve(task.func)(*args, **kwargs)


@pytest.fixture
def gae_testbed(request):
    """An active testbed; deactivated (and its data gone) after the test.
    Its composite indexes are those of ``index.yaml`` at pytest's root."""
    bed = start_testbed(root_path=str(request.config.rootpath))
    try:
        yield bed
    finally:
        bed.deactivate()


@pytest.fixture
def run_tasks(gae_testbed):
    """``async_.run_tasks``, the same code path a worker runs."""
    return async_.run_tasks


@pytest.fixture
def task_clock():
    """A ``Clock`` for ``run_tasks(clock=task_clock)``, now at real time."""
    return Clock()


@pytest.fixture
def snapshot_server(gae_testbed):
    """``getApp(token=..., app_engine_headers=False)`` on 127.0.0.1.

    It serves until the test ends. The stubs are process-wide, so the
    server's threads see the datastore the test writes to.
    """
    from .webserver import ThreadedServer
    from .snapshot import getApp
    token = secrets.token_urlsafe(16)
    app = getApp(token=token, app_engine_headers=False)
    with ThreadedServer(app) as server:
        server.token = token
        yield server
