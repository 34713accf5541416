"""The arguments of ``lovely-gae``: where they go, what they take, the help."""
import argparse
import json
import os
import subprocess
import sys

import pytest

from lovely_gae import cli
from tests.conftest import demo_into
from tests.conftest import run_cli as run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = sorted(cli.COMMANDS)


def test_download_takes_a_number_as_the_id(empty_store, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(['download', '--help'])
    assert info.value.code == 0
    usage = capsys.readouterr().out.split('\n\n')[0]
    assert usage.endswith(' [ID] OUT_DIR')
    with pytest.raises(SystemExit) as info:
        run(empty_store, 'download', '442')
    assert info.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith('usage: lovely-gae download ')
    assert err[-1] == ('lovely-gae download: error: 442 is a snapshot ID; '
                       'give OUT_DIR too, or ./442 for a directory of that '
                       'name')
    assert run(empty_store, 'download', '442', 'out') == 1
    assert capsys.readouterr().err == (
        'lovely-gae: error: no snapshot with id 442\n')
    assert not os.path.exists('442') and not os.path.exists('out')


@pytest.mark.parametrize('command', COMMANDS)
def test_each_command_has_its_own_help_with_the_global_options(command,
                                                                capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([command, '--help'])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith('usage: lovely-gae %s ' % command)
    options = text.split('\nglobal options:\n')[1]
    for option in ('--datastore PATH', '--url URL', '--app-id APP',
                   '--token TOKEN', '--json', '--debug'):
        assert '\n  %s ' % option in options


def test_the_seed_script_has_the_download_help(capsys):
    with pytest.raises(SystemExit) as info:
        cli.download_snapshot(['--help'])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith('usage: lovely-gae download ')
    assert '\nglobal options:\n' in text


def test_global_options_go_before_or_after_the_command(store, capsys):
    demo_into(store)
    capsys.readouterr()
    for argv in (['list', '--json', '--datastore', store],
                 ['--json', 'list', '--datastore', store],
                 ['--datastore', store, 'list', '--json'],
                 ['--datastore', store, '--json', 'list', '--debug']):
        assert cli.main(argv) == 0, argv
        [snap] = json.loads(capsys.readouterr().out)
        assert snap['status'] == 'finished'
    with pytest.raises(SystemExit) as info:
        cli.main(['--url', 'http://127.0.0.1:9', 'list', '--datastore',
                  store])
    assert info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        'lovely-gae list: error: --datastore and --url exclude each other')


@pytest.mark.parametrize('argv, error', [
    (['serve', '--port', '70000'], 'argument --port: 70000 is not from 0 '
     'to 65535'),
    (['serve', '--port', 'http'], "argument --port: not a number: 'http'"),
    (['prune', '--keep', '-1'], 'argument --keep: -1 is not at least 0'),
    (['worker', '--threads', '0'], 'argument --threads: 0 is not from 1 '
     'to 64'),
    (['worker', '--seconds', '-5'], 'argument --seconds: -5 is not at '
     'least 0'),
    (['status', '0'], 'argument ID: 0 is not at least 1'),
    (['restore', '1', '--timeout', '-1'], 'argument --timeout: -1 is not '
     'at least 0'),
])
def test_bad_values_are_one_line_usage_errors(store, capsys, argv, error):
    with pytest.raises(SystemExit) as info:
        run(store, *argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith('usage: lovely-gae %s' % argv[0])
    assert err[-1] == 'lovely-gae %s: error: %s' % (argv[0], error)
    assert not os.path.exists(store)  # nothing ran


@pytest.mark.parametrize('argv, hint', [
    (['lst'], "invalid choice: 'lst' (choose from 'create', 'list', "),
    (['lst'], '; did you mean list?'),
    (['create', 'Kind', '--namspace', 'x'], 'unrecognized arguments: '
     '--namspace x; did you mean --namespace?'),
    (['--dtastore', 'x', 'list'], "invalid choice: 'x' "),
    (['--dtastore', 'x', 'list'], '; --dtastore is no option; did you mean '
     '--datastore?'),
    (['restore', '--kinds', 'Kind', '1208'], 'required: ID; 1208 looks like '
     'the snapshot ID: put it before the options that take lists (--kinds)'),
])
def test_misspelt_commands_and_options_get_a_hint(capsys, argv, hint):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert hint in capsys.readouterr().err.splitlines()[-1]


def test_no_hint_where_nothing_is_close(capsys):
    with pytest.raises(SystemExit):
        cli.main(['xyzzy'])
    assert 'did you mean' not in capsys.readouterr().err


def _subparsers():
    [sub] = [action for action in cli.build_parser()._actions
             if isinstance(action, argparse._SubParsersAction)]
    return sub.choices


def test_help_shows_defaults_and_names_ids_alike():
    for name, parser in _subparsers().items():
        for action in parser._actions:
            if action.dest == 'id':
                assert action.metavar == 'ID', name
            if action.default not in (None, False, argparse.SUPPRESS):
                assert 'default' in action.help, (name, action.dest)


#: A script's start: ``FakeApp``, the stand-in for the app that
#: ``benchmarks --startup`` times ``list`` against (run from its file: the
#: ``benchmarks`` package imports the SDK).
_FAKE_APP = ('import runpy, sys\n'
             'FakeApp = runpy.run_path("benchmarks/startup.py")["FakeApp"]\n')

#: A script's end: the modules of the SDK it imported.
_PRINT_GOOGLE = ('print(sorted(name for name in sys.modules\n'
                 '             if name.startswith("google.")))\n')


def _google_modules_after(script):
    """The last line ``script`` prints, run in a process of its own."""
    done = subprocess.run([sys.executable, '-c', script], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()[-1]


def test_help_and_usage_errors_import_no_sdk():
    """They answer at once: the SDK (grpc and all) is not imported."""
    script = ('import sys\n'
              'from lovely_gae.cli import main, download_snapshot\n'
              'for call, argv in [(main, ["--help"]), (main, ["--version"]),\n'
              '                   (main, ["list", "--help"]),\n'
              '                   (main, ["status", "x"]),\n'
              '                   (download_snapshot, ["--help"])]:\n'
              '    try:\n'
              '        call(argv)\n'
              '    except SystemExit:\n'
              '        pass\n'
              'print(sorted({name.split(".")[0] + "." + name.split(".")[1]\n'
              '              for name in sys.modules\n'
              '              if name.startswith("google.")}))\n')
    assert _google_modules_after(script) == '[]'


def test_url_commands_import_no_sdk():
    """A command with ``--url`` talks to an app: it needs nothing of the
    SDK (1.5 s of imports), on either side of the call. ``FakeApp`` stands
    in for the app; ``benchmarks --startup`` times ``list`` against it."""
    script = (_FAKE_APP +
              'from lovely_gae.cli import main\n'
              'with FakeApp() as app:\n'
              '    for argv in (["list"], ["status", "7"],\n'
              '                 ["create", "Customer"], ["worker"],\n'
              '                 ["delete", "7", "--yes"],\n'
              '                 ["prune", "--keep", "1", "--yes"]):\n'
              '        assert main(["--url", app.url, "--token", "x"]\n'
              '                    + argv) == 0, argv\n'
              + _PRINT_GOOGLE)
    assert _google_modules_after(script) == '[]'


def test_prune_that_asks_over_url_imports_no_sdk():
    """Without ``--yes`` prune asks about what ``prunable`` finds on the
    app's listing first: that rule needs nothing of the SDK either."""
    script = (_FAKE_APP +
              'from lovely_gae import cliask\n'
              'from lovely_gae.cli import main\n'
              'cliask.can_ask = lambda args: None\n'
              'cliask.confirm = lambda *args, **kwargs: True\n'
              'with FakeApp() as app:\n'
              '    assert main(["--url", app.url, "--token", "x", "prune",\n'
              '                 "--keep", "0"]) == 0\n'
              + _PRINT_GOOGLE)
    assert _google_modules_after(script) == '[]'


def test_the_startup_benchmark_times_help(tmp_path):
    """``python -m benchmarks --startup`` runs and reports every command
    (no timed assertion: how fast is for the benchmark to say)."""
    done = subprocess.run(
        [sys.executable, '-m', 'benchmarks', '--startup', '--repeats', '1',
         '--json'], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [r['measurement'] for r in rows] == [
        'startup: lovely-gae --help', 'startup: lovely-gae --version',
        'startup: lovely-gae download --help',
        'startup: lovely-gae --url URL list']
    for row in rows:
        assert row['ours'] > 0 and row['floor'] > 0
        assert row['met'] in (True, False)
    assert [row['target_seconds'] for row in rows] == [0.3, 0.3, 0.3, 0.6]


def test_queue_takes_the_file_lock_only_to_change_the_queue(store):
    parser = cli.build_parser()
    for argv, writes in ((['queue'], False), (['queue', '--retry'], True),
                         (['queue', '--drop', '--yes'], True)):
        args = parser.parse_args(argv)
        cli.cliparse.check_usage(parser, args)
        assert args.writes is writes
    with pytest.raises(SystemExit) as info:
        parser.parse_args(['queue', '--retry', '--drop'])
    assert info.value.code == 2


@pytest.mark.parametrize('argv, line', [
    (['lst'], "lovely-gae: error: argument COMMAND: invalid choice: 'lst' "
     "(choose from 'create', 'list', 'status', 'restore', 'delete', "
     "'prune', 'download', 'upload', 'verify', 'inspect', 'queue', "
     "'serve', 'worker', 'demo'); did you mean list?"),
    (['create', 'Customer', '--namspace', 'x'], 'lovely-gae create: error: '
     'unrecognized arguments: --namspace x; did you mean --namespace?'),
    (['list', '--jsn'], 'lovely-gae list: error: unrecognized arguments: '
     '--jsn; did you mean --json?'),
    (['list', '--zzzzzz'], 'lovely-gae list: error: unrecognized arguments: '
     '--zzzzzz'),
])
def test_a_misspelt_command_or_option_is_named_with_what_it_is_close_to(
        capsys, argv, line):
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == line
    if argv[0] != 'lst':  # the usage of the command it was given to
        assert err.startswith('usage: lovely-gae %s ' % argv[0])
