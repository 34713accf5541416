"""Test setup shared by tests/ and the doctests in docs/."""
import pytest

from lovely_gae import async_, defaults
from lovely_gae.testing import (  # noqa: F401
    gae_testbed, run_tasks, snapshot_server)

# tests/test_testing_plugin.py runs pytest on a user's tests.
pytest_plugins = ['pytester']


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    """Tests run off App Engine, with no token and not in token-only mode,
    whatever the shell has set.

    Setting (not deleting) lets monkeypatch undo what a test sets later.
    """
    monkeypatch.setenv('GAE_ENV', '')
    monkeypatch.setenv(defaults.TOKEN_ENV, '')
    monkeypatch.setenv(defaults.TOKEN_ONLY_ENV, '')


@pytest.fixture(autouse=True)
def _doctest_setup(request):
    """Doctest files run in a fresh testbed, with ``run_tasks`` a global."""
    if type(request.node).__name__ == 'DoctestItem':
        request.getfixturevalue('gae_testbed')
        request.getfixturevalue('doctest_namespace')['run_tasks'] = (
            async_.run_tasks)
    yield
