"""README.rst's examples run as written: its Python as a doctest, its
commands through the installed ``lovely-gae``, each in a directory of its
own, as a new user meets them.

What cannot run here is put in stand-ins and said so: 442 is the id a
command printed, the deployed apps are ``lovely-gae serve`` on loopback
ports, and ``pip install`` is the one this test runs in.
"""
import doctest
import os
import shlex
import shutil
import signal
import subprocess
import sys

import pytest

from lovely_gae.local import local_datastore
from lovely_gae.snapshot.transfer import devfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, 'README.rst')
DATASTORE = 'lovely-gae.datastore'


def readme():
    with open(README, encoding='utf-8') as f:
        return f.read()


def literal_blocks(text):
    """The literal blocks (after ``::``), each a list of its lines,
    dedented, with continuation lines (``\\``) joined."""
    blocks, lines = [], text.splitlines()
    for number, line in enumerate(lines):
        if not line.endswith('::'):
            continue
        block = []
        for inner in lines[number + 2:]:
            if inner and not inner.startswith('    '):
                break
            block.append(inner[4:])
        text = '\n'.join(block).strip('\n').replace('\\\n', ' ')
        blocks.append(text.splitlines())
    return blocks


def commands(block):
    """The commands of a block of shell lines, comments dropped."""
    return [words for words in (shlex.split(line, comments=True)
                                for line in block) if words]


def block_with(words):
    """The commands of the one literal block that has ``words``."""
    [found] = [block for block in literal_blocks(readme())
               if any(words in line for line in block)]
    return commands(found)


def lovely_gae():
    """The installed command, beside this Python or on the PATH."""
    found = (shutil.which('lovely-gae', path=os.path.dirname(sys.executable))
             or shutil.which('lovely-gae'))
    assert found, 'lovely-gae is not installed (pip install .)'
    return found


def environment(**values):
    env = dict(os.environ, **values)
    for name in ('GAE_APPLICATION', 'LOVELY_GAE_TOKEN'):
        if name not in values:
            env.pop(name, None)
    return env


def shell(words, cwd, env=None, expect=0):
    """Run README command ``words`` in ``cwd``; its stdout."""
    assert words[0] == 'lovely-gae', words
    done = subprocess.run([lovely_gae()] + words[1:], cwd=str(cwd),
                          env=env or environment(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == expect, (words, done.stdout, done.stderr)
    return done.stdout


def created_id(out):
    """The id in ``Created Snapshot 442``."""
    [line] = [line for line in out.splitlines()
              if line.startswith('Created Snapshot ')]
    return line.split()[2]


@pytest.fixture(scope='module')
def demo_dir(tmp_path_factory):
    """A directory where ``lovely-gae demo`` ran, as the README's first
    command leaves it."""
    path = tmp_path_factory.mktemp('demo')
    [first] = literal_blocks(readme())[:1]
    assert len(first) == 1
    install, _, demo = first[0].rpartition(' && ')
    assert install.endswith('pip install .')
    out = shell(shlex.split(demo), path)
    assert 'byte for byte: yes' in out
    return path


@pytest.fixture
def after_demo(demo_dir, tmp_path):
    """A directory of its own with the demo's datastore file."""
    shutil.copy(str(demo_dir / DATASTORE), str(tmp_path / DATASTORE))
    return tmp_path


def test_the_test_command_runs_the_whole_suite():
    [block] = [block for block in literal_blocks(readme())
               if any('pytest' in line for line in block)]
    assert block == ["python3 -m venv .venv && . .venv/bin/activate && "
                     "pip install '.[test]' && python -m pytest"]
    with open(os.path.join(ROOT, 'tox.ini'), encoding='utf-8') as f:
        assert '\ntestpaths = tests docs\n' in f.read()


def test_the_python_example_runs(after_demo, monkeypatch):
    monkeypatch.chdir(after_demo)
    monkeypatch.delenv('GAE_APPLICATION', raising=False)
    parser = doctest.DocTestParser()
    test = parser.get_doctest(readme(), {}, 'README.rst', README, 0)
    assert len(test.examples) == 3
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.failures == 0
    with local_datastore(save=False):  # what it did is saved
        from lovely_gae.snapshot import api
        assert len(api.list_snapshots()) == 2


def test_the_local_commands_run(after_demo):
    create, list_, restore, download, inspect, serve = block_with(
        'lovely-gae create ')
    snapshot_id = created_id(shell(create, after_demo))
    assert snapshot_id in shell(list_, after_demo)

    def with_id(words):
        return [word.replace('442', snapshot_id) for word in words]
    out = shell(with_id(restore), after_demo)
    assert out.startswith('Dry run, nothing written.\n')
    out = shell(with_id(download), after_demo)
    path = os.path.join('.', 'out', 'snapshot.' + snapshot_id)
    assert out.splitlines()[-1] == 'Saving to ' + path
    assert devfile.count_kinds(str(after_demo / path)) == {
        'Customer': 250, 'Order': 600}
    out = shell(with_id(inspect), after_demo)
    assert '  Customer: 250 entities, keys Customer:' in out
    process, banner = start(serve, after_demo)
    try:
        # It prints the token it made up, and how to use it.
        [export] = [line.split() for line in banner if 'export' in line]
        [call] = [shlex.split(line) for line in banner if '--url' in line]
        token = export[1].split('=', 1)[1]
        out = shell(call, after_demo, environment(LOVELY_GAE_TOKEN=token))
        assert snapshot_id in out
    finally:
        stop(process)
    assert banner[0].startswith('Serving http://127.0.0.1:')


def start(serve, cwd, env=None):
    """README's ``lovely-gae serve``, on any free port: ``(process,
    banner)``."""
    assert serve == ['lovely-gae', 'serve']
    process = subprocess.Popen(
        [lovely_gae(), 'serve', '--port', '0'], cwd=str(cwd),
        env=env or environment(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    banner = []
    while not banner or 'Press Ctrl-C' not in banner[-1]:
        line = process.stdout.readline()
        if not line:
            stop(process)
            raise AssertionError(process.stderr.read())
        banner.append(line.rstrip('\n'))
    return process, banner


def stop(process):
    """Ctrl-C, after a call was served (before, it may come before the
    server runs, and end it with 130)."""
    process.send_signal(signal.SIGINT)
    try:
        out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # fail here, leave no process behind
        process.kill()
        process.communicate()
        raise AssertionError('lovely-gae serve went on after Ctrl-C')
    assert process.returncode == 0, err


def test_the_commands_on_a_deployed_app_run(tmp_path):
    """The apps are ``lovely-gae serve`` on a datastore of their own: my-app
    with customers, staging empty."""
    from google.appengine.api import datastore
    block = block_with('export LOVELY_GAE_TOKEN')
    export, create, download, upload = block
    assert export == ['export', 'LOVELY_GAE_TOKEN=...']
    serve = block_with('lovely-gae serve')[-1]
    env = environment(LOVELY_GAE_TOKEN='the-token-of-the-apps')
    urls, servers = {}, []
    for name in ('my-app', 'staging.my-app'):
        directory = tmp_path / name
        directory.mkdir()
        if name == 'my-app':
            with local_datastore(str(directory / DATASTORE)):
                datastore.Put([datastore.Entity('Customer')
                               for _ in range(7)])
        process, banner = start(serve, directory, env)
        servers.append(process)
        urls['https://%s.appspot.com' % name] = banner[0].split()[1].rsplit(
            '/lovely.gae/', 1)[0]
    client = tmp_path / 'client'
    client.mkdir()
    try:
        def deployed(words):
            return [urls.get(word, word) for word in words]
        snapshot_id = created_id(shell(deployed(create), client, env))
        out = shell(deployed(download), client, env)
        path = os.path.join('.', 'out', 'snapshot.' + snapshot_id)
        assert out.splitlines()[-1] == 'Saving to ' + path
        out = shell([word.replace('442', snapshot_id)
                     for word in deployed(upload)], client, env)
        assert out == 'Uploaded 7 entities from %s\n' % path
    finally:
        for process in servers:
            stop(process)
    staging = str(tmp_path / 'staging.my-app' / DATASTORE)
    assert devfile.count_kinds(staging)['Customer'] == 7


def test_the_help_commands_run(tmp_path):
    text = readme()
    assert '``lovely-gae --help`` and ``lovely-gae COMMAND --help``' in text
    assert shell(['lovely-gae', '--help'], tmp_path).startswith(
        'usage: lovely-gae ')
    for command in ('create', 'download'):
        assert shell(['lovely-gae', command, '--help'], tmp_path).startswith(
            'usage: lovely-gae %s ' % command)
    assert os.listdir(str(tmp_path)) == []  # --help writes nothing


def test_the_quick_benchmark_commands_run():
    """``--startup`` and ``--help``; the long runs are the benchmark's own
    to test (test_benchmarks)."""
    block = block_with('python -m benchmarks --startup')
    assert ['python', '-m', 'benchmarks', '--startup'] in block
    for argument, says in (('--startup', 'startup: lovely-gae --help '),
                           ('--help', 'usage: python -m benchmarks')):
        done = subprocess.run(
            [sys.executable, '-m', 'benchmarks', argument], cwd=ROOT,
            capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert says in done.stdout
