"""Hostile and damaged files on the file paths: the datastore file given by
``--datastore``, and the files ``inspect``, ``verify`` and ``upload`` read."""
import json

import pytest
from google.appengine.api import datastore

from lovely_gae import cli
from lovely_gae.snapshot.transfer.devfile import DevFileWriter
from lovely_gae.webserver import ThreadedServer
from tests.conftest import run_cli as run
from tests.test_transfer_trust import Hostile


def spoiled(field, namespace='', **key):
    """The bytes of an entity whose ``field`` of the key (its value in the
    entity is ``'zqzq'``) is no UTF-8: as protobuf reads it, bytes."""
    values = {'app': 'lovely-gae-local', 'kind': 'Dummy', 'name': 'one',
              'namespace': namespace}
    values[field] = 'zqzq'
    entity = datastore.Entity(values['kind'], name=values['name'],
                              namespace=values['namespace'],
                              _app=values['app'])
    entity['title'] = 'a'
    record = entity.ToPb().SerializeToString()
    assert b'zqzq' in record  # twice for the path: and its group's
    return record.replace(b'zqzq', b'zq\xffq')


def write(path, records):
    with open(path, 'wb') as fileobj:
        writer = DevFileWriter(fileobj)
        writer.add_many(records)
        writer.close()


@pytest.mark.parametrize('field', ['app', 'namespace', 'kind', 'name'])
def test_a_datastore_file_whose_keys_are_no_text_is_a_one_line_error(
        store, capsys, field):
    write(store, [spoiled(field)])
    with open(store, 'rb') as fileobj:
        content = fileobj.read()
    for command in (['list'], ['create']):
        assert run(store, *command) == 1
        assert capsys.readouterr().err == (
            'lovely-gae: error: datastore file %s: record 1 has a key not in '
            'UTF-8\n' % store)
    with open(store, 'rb') as fileobj:
        assert fileobj.read() == content  # left as it was


@pytest.mark.parametrize('field', ['app', 'namespace', 'kind', 'name'])
def test_a_file_whose_keys_are_no_text_is_a_one_line_error(
        store, capsys, tmp_path, field):
    path = str(tmp_path / 'snapshot.7')
    write(path, [spoiled(field)])
    assert run(store, 'inspect', path) == 1
    assert capsys.readouterr().err == (
        'lovely-gae: error: %s: entity 1: its key is damaged\n' % path)
    what = {'namespace': 'name_space'}.get(field, field)
    for command in (['verify'], ['upload', '--yes']):
        assert run(store, *command, path) == 1
        assert capsys.readouterr().err == (
            "lovely-gae: error: %s: entity 1: a key %s is not UTF-8: "
            "b'zq\\xffq'\n" % (path, what))


@pytest.fixture
def hostile(gae_testbed):
    app = Hostile()
    with ThreadedServer(app) as server:
        app.url = server.url
        yield app


def upload_file(path, count=3):
    records = []
    for number in range(1, count + 1):
        entity = datastore.Entity('Dummy', id=number, _app='s~prod')
        entity['title'] = str(number)
        records.append(entity.ToPb().SerializeToString())
    write(path, records)
    return path


def upload(hostile, path, *options):
    return cli.main(['--url', hostile.url, '--token', 's3cret'] +
                    list(options) + ['upload', '--yes', path])


@pytest.mark.parametrize('answer', [b'{}', b'[]', b'{"put": "3"}',
                                    b'{"put": 2}', b'{"put": true}'])
def test_an_upload_answer_not_the_apps_is_a_one_line_error(
        hostile, tmp_path, capsys, answer):
    path = upload_file(str(tmp_path / 'snapshot.7'))
    hostile.serve('/lovely.gae/upload', answer,
                  headers=[('Content-Type', 'application/json')])
    assert upload(hostile, path) == 1
    err = capsys.readouterr().err
    assert err == ('lovely-gae: error: %s/lovely.gae/upload answered an '
                   'upload of 3 entities with %s, not the count it put\n'
                   % (hostile.url, json.loads(answer)))
