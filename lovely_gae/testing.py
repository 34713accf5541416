"""A pytest plugin for tests of apps that use lovely_gae.

Installed with the package (entry point ``pytest11``), it offers:

- ``gae_testbed``: an activated App Engine testbed (app id
  ``lovely-gae-testing``) with the datastore stub, whose consistency policy
  always applies writes, and the memcache stub;
- ``run_tasks``: ``lovely_gae.async_.run_tasks``, with the testbed active;
- ``snapshot_server``: the snapshot app on a real HTTP server (waitress) on
  a loopback port, on the testbed's datastore, requiring a bearer token:
  ``snapshot_server.url`` and ``snapshot_server.token``.
"""
import secrets

import pytest
from google.appengine.api import namespace_manager
from google.appengine.datastore import datastore_stub_util
from google.appengine.ext import testbed as gae_testbed_module

from . import async_

__all__ = ['APP_ID', 'start_testbed', 'gae_testbed', 'run_tasks',
           'snapshot_server']

APP_ID = 'lovely-gae-testing'


def start_testbed(app_id=APP_ID, datastore_file=None, **stub_kwargs):
    """Activate and return a testbed with the datastore and memcache stubs."""
    bed = gae_testbed_module.Testbed()
    bed.activate()
    bed.setup_env(app_id=app_id, overwrite=True)
    policy = datastore_stub_util.PseudoRandomHRConsistencyPolicy(
        probability=1)
    bed.init_datastore_v3_stub(consistency_policy=policy,
                               datastore_file=datastore_file, **stub_kwargs)
    bed.init_memcache_stub()
    namespace_manager.set_namespace('')
    return bed


@pytest.fixture
def gae_testbed():
    """An active testbed; deactivated (and its data gone) after the test."""
    bed = start_testbed()
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
    """``getApp(token=...)`` served on 127.0.0.1 until the test ends.

    The stubs are process-wide, so the server's threads see the datastore
    the test writes to.
    """
    from .server import ThreadedServer
    from .snapshot import getApp
    token = secrets.token_urlsafe(16)
    with ThreadedServer(getApp(token=token)) as server:
        server.token = token
        yield server
