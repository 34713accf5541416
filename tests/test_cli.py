import json

import pytest

from lovely_gae import cli
from lovely_gae.snapshot import client, devfile


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv('GAE_APPLICATION', raising=False)
    return str(tmp_path / 'data.datastore')


def run(store, *args):
    return cli.main(['--datastore', store] + list(args))


def test_demo_restores_byte_for_byte_and_downloads(store, capsys, tmp_path):
    assert run(store, 'demo') == 0
    out = capsys.readouterr().out
    assert 'byte for byte: yes' in out
    assert 'Customer: 10 created, 0 changed, 0 deleted' in out
    [name] = (tmp_path / 'lovely-gae-demo').iterdir()
    assert devfile.count_kinds(str(name)) == {'Customer': 250, 'Order': 600}


def test_create_list_status_restore_delete_on_a_datastore_file(
        store, capsys, tmp_path):
    assert run(store, 'demo') == 0
    capsys.readouterr()
    assert run(store, '--json', 'list') == 0
    [snap] = json.loads(capsys.readouterr().out)
    assert snap['status'] == 'finished'
    assert run(store, '--json', 'create', 'Customer') == 0
    created = json.loads(capsys.readouterr().out)
    assert created['kinds'] == ['Customer']
    assert created['progress']['entities'] == 0  # demo data is namespaced
    assert run(store, '--json', 'status', str(snap['id'])) == 0
    assert json.loads(capsys.readouterr().out)['id'] == snap['id']
    assert run(store, 'delete', str(created['id'])) == 0
    assert run(store, '--json', 'list') == 0
    assert [s['id'] for s in json.loads(capsys.readouterr().out.split(
        'Deleted snapshot %d\n' % created['id'])[-1])] == [snap['id']]


def test_errors_are_one_line_and_exit_1(store, capsys):
    assert run(store, 'status', '999') == 1
    err = capsys.readouterr().err
    assert err == 'lovely-gae: error: no snapshot with id 999\n'
    assert run(store, 'create', '--batchsize', '0') == 1
    assert 'invalid batchsize 0' in capsys.readouterr().err


def test_bad_usage_exits_2(store, capsys):
    with pytest.raises(SystemExit) as info:
        run(store, 'restore')
    assert info.value.code == 2


def test_seed_download_script(store, capsys, tmp_path):
    assert run(store, 'demo') == 0
    out_dir = tmp_path / 'out'
    out_dir.mkdir()
    assert cli.main(['--datastore', store, 'download', str(out_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith('Saving to %s/snapshot.' % out_dir)
    # The seed's entry point takes the same arguments.
    code = client.main(["--datastore", store, str(out_dir)])
    assert code == 1  # the file of the latest snapshot exists already
    assert "Out file exists" in capsys.readouterr().err
