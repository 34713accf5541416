"""``--json``: each command prints one shape, documented in docs/cli.rst
(whose examples run as doctests), and errors are JSON on stderr with the
same exit statuses."""
import io
import json
import os

import pytest

from lovely_gae import cli
from tests.conftest import Dummy, run_cli

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), 'docs', 'cli.rst')


def test_every_command_is_in_the_page_of_shapes():
    with open(DOC, encoding='utf-8') as f:
        text = f.read()
    for command in cli.COMMANDS:
        assert '``%s' % command in text, command


@pytest.fixture
def snapshot(store, capsys):
    from lovely_gae.local import local_datastore
    with local_datastore(store):
        Dummy(title='a').put()
    assert run_cli(store, '--json', 'create', 'Dummy') == 0
    return json.loads(capsys.readouterr().out)


def test_status_and_list_show_what_create_showed(store, capsys, snapshot):
    assert run_cli(store, 'status', str(snapshot['id']), '--json') == 0
    assert json.loads(capsys.readouterr().out) == snapshot
    assert run_cli(store, 'list', '--json') == 0
    assert json.loads(capsys.readouterr().out) == [snapshot]


def test_download_names_the_snapshot(store, capsys, snapshot, tmp_path):
    assert run_cli(store, '--json', 'download', str(tmp_path / 'out')) == 0
    assert json.loads(capsys.readouterr().out) == {
        'id': snapshot['id'], 'app_id': 'lovely-gae-local',
        'path': str(tmp_path / 'out' / ('snapshot.%d' % snapshot['id']))}


def test_a_question_nobody_can_answer_is_json_too(store, capsys, snapshot,
                                                  monkeypatch):
    monkeypatch.setattr('sys.stdin', io.StringIO(''))
    assert run_cli(store, '--json', 'delete', str(snapshot['id'])) == 2
    error = json.loads(capsys.readouterr().err)
    assert (error['type'], error['exit']) == ('Refused', 2)
    assert error['error'].startswith('asks before it deletes')


def test_ctrl_c_is_json_too(empty_store, capsys, monkeypatch):
    def interrupted(args, client):
        raise KeyboardInterrupt()
    monkeypatch.setitem(cli.COMMANDS, 'list', interrupted)
    assert run_cli(empty_store, '--json', 'list') == 130
    assert json.loads(capsys.readouterr().err) == {
        'error': 'interrupted', 'type': 'Interrupted', 'exit': 130}


def test_usage_errors_are_json_with_json(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(['status', 'abc', '--json'])
    assert info.value.code == 2
    error = json.loads(capsys.readouterr().err)
    assert error == {'error': "argument ID: not a number: 'abc'",
                     'type': 'UsageError', 'exit': 2,
                     'usage': error['usage']}
    assert error['usage'].startswith('usage: lovely-gae status ')
    with pytest.raises(SystemExit):
        cli.main(['status', 'abc'])
    assert capsys.readouterr().err.startswith('usage: lovely-gae status')


def test_serve_prints_its_address_and_made_up_token(store, capsys,
                                                    monkeypatch):
    from lovely_gae import server
    monkeypatch.delenv('LOVELY_GAE_TOKEN', raising=False)

    def run(self):  # serves, and stops at once
        self.start()
        self.stop()
    monkeypatch.setattr(server.LocalServer, 'run', run)
    assert run_cli(store, '--json', 'serve', '--port', '0') == 0
    banner = json.loads(capsys.readouterr().out)
    assert banner['url'].startswith('http://127.0.0.1:')
    assert banner['url'].endswith('/lovely.gae/')
    assert len(banner['token']) > 20


def test_errors_over_url_are_the_same_json(snapshot_server, capsys,
                                           monkeypatch):
    monkeypatch.setenv('LOVELY_GAE_TOKEN', snapshot_server.token)
    assert cli.main(['--url', snapshot_server.url, '--json', 'status',
                     '999']) == 1
    assert json.loads(capsys.readouterr().err) == {
        'error': 'no snapshot with id 999', 'type': 'SnapshotNotFound',
        'exit': 1, 'id': 999}


def test_a_no_and_a_wrong_place_are_json_too(store, capsys, snapshot,
                                             monkeypatch):
    from tests.test_cli_more import typing
    typing(monkeypatch, 'n')
    assert run_cli(store, '--json', 'delete', str(snapshot['id'])) == 1
    captured = capsys.readouterr()
    assert captured.out == ''
    # After the question (the terminal shows the answer and its newline).
    assert json.loads(captured.err.rsplit('[y/N] ', 1)[1]) == {
        'error': 'nothing changed', 'type': 'Declined', 'exit': 1}
    with pytest.raises(SystemExit) as info:
        cli.main(['--url', 'http://127.0.0.1:9', 'queue', '--json'])
    assert info.value.code == 2
    error = json.loads(capsys.readouterr().err)
    assert (error['error'], error['type']) == (
        "an app's task queue is not available over --url, only a local "
        "datastore file's", 'UsageError')
