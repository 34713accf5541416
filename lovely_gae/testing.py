"""A pytest plugin for tests of apps that use lovely_gae.

Installed with the package (entry point ``pytest11``), it offers:

- ``gae_testbed``: an activated App Engine testbed (app id
  ``lovely-gae-testing``) with the datastore stub, whose consistency policy
  always applies writes, and the memcache stub;
- ``run_tasks``: ``lovely_gae.async_.run_tasks``, with the testbed active;
- ``snapshot_server``: the snapshot app on a real HTTP server (waitress) on
  a loopback port, on the testbed's datastore, requiring a bearer token
  from every caller (App Engine's headers count for nothing, even with
  ``GAE_ENV`` set): ``snapshot_server.url`` and ``snapshot_server.token``.
"""
import secrets

import pytest

from . import async_
from .local import TESTING_APP_ID, start_testbed

__all__ = ['APP_ID', 'start_testbed', 'gae_testbed', 'run_tasks',
           'snapshot_server']

APP_ID = TESTING_APP_ID


@pytest.fixture
def gae_testbed():
    """An active testbed; deactivated (and its data gone) after the test."""
    bed = start_testbed(app_id=APP_ID)
    try:
        yield bed
    finally:
        bed.deactivate()


@pytest.fixture
def run_tasks(gae_testbed):
    """``async_.run_tasks``, the same code path a worker runs."""
    return async_.run_tasks


@pytest.fixture
def snapshot_server(gae_testbed):
    """``getApp(token=..., app_engine_headers=False)`` on 127.0.0.1.

    It serves until the test ends. The stubs are process-wide, so the
    server's threads see the datastore the test writes to.
    """
    from .server import ThreadedServer
    from .snapshot import getApp
    token = secrets.token_urlsafe(16)
    app = getApp(token=token, app_engine_headers=False)
    with ThreadedServer(app) as server:
        server.token = token
        yield server
