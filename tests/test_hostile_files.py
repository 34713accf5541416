"""Hostile and damaged files on the file paths: the datastore file given by
``--datastore``, and the files ``inspect``, ``verify`` and ``upload`` read."""
import pytest
from google.appengine.api import datastore

from tests.conftest import run_cli as run
from lovely_gae.snapshot.transfer.devfile import DevFileWriter


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
