"""The embedded default: the datastore file, its lock, its save."""
import errno
import io
import os
import pickle
import subprocess
import sys

import pytest
from google.appengine.api import datastore
from google.appengine.ext import db
from webtest import TestApp

from lovely_gae import cli, defaults, local
from lovely_gae.entities import EntityProto
from lovely_gae.exceptions import DatastoreFileError, DatastoreLocked
from lovely_gae.local import LocalDatastore, local_datastore
from lovely_gae.snapshot import getApp
from lovely_gae.snapshot.transfer import devfile, wire
from lovely_gae.snapshot.transfer.devfile import DevFileWriter
from lovely_gae.snapshot.models import Snapshot
from tests.conftest import Dummy, sdk_file_testbed
from tests.conftest import run_cli as run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def left_in(directory):
    """The files in ``directory`` but the datastore file and its lock."""
    return sorted(name for name in os.listdir(str(directory))
                  if name not in ('data.datastore', 'data.datastore.lock'))


def snapshots_in(store):
    with local_datastore(store, save=False):
        return Snapshot.all().count()


def fill(store, count=3):
    with local_datastore(store):
        db.put([Dummy(title=str(i)) for i in range(count)])


class Trap:
    """Unpickling this creates the directory ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


@pytest.mark.parametrize('protocol', [1, 2, pickle.HIGHEST_PROTOCOL])
def test_a_crafted_datastore_file_runs_no_code(store, tmp_path, capsys,
                                               protocol):
    marker = str(tmp_path / 'pwned')
    with open(store, 'wb') as f:
        pickle.dump([Trap(marker)], f, protocol=protocol)
    assert run(store, 'list') == 1
    assert not os.path.exists(marker)
    err = capsys.readouterr().err
    assert err.startswith('lovely-gae: error: datastore file %s: not a '
                          'datastore file' % store)
    assert err.count('\n') == 1


@pytest.mark.parametrize('content, reason', [
    (b'not a datastore at all',
     "not a datastore file: it starts with b'not a da'"),
    (b'\x80\x03](C\x08garbage!e.', 'record 1 is not an entity'),
    (b'\x80\x03](C\x02j\x00e.', 'record 1 is not a complete entity'),
    (b'\x80\x03](\x8e\xff\xff\xff\xff\xff\xff\xff\x0f',
     'entity 1 claims 1152921504606846975 bytes, more than an entity '
     'takes'),
    (b'\x80\x03](C\x10ab', 'cut short after 0 entities'),
])
def test_a_damaged_datastore_file_is_a_one_line_error(store, capsys, content,
                                                      reason):
    with open(store, 'wb') as f:
        f.write(content)
    assert run(store, 'list') == 1
    assert capsys.readouterr().err == (
        'lovely-gae: error: datastore file %s: %s\n' % (store, reason))
    with open(store, 'rb') as f:
        assert f.read() == content  # left as it was


def test_a_file_the_sdk_saved_loads_and_ids_go_on(store):
    bed = sdk_file_testbed(defaults.LOCAL_APP_ID, store, save_changes=True)
    try:
        keys = db.put([Dummy(title=str(i)) for i in range(3)])
        bed.get_stub('datastore_v3').Write()  # protocol 1, a timestamp
    finally:
        bed.deactivate()
    with local_datastore(store) as datastore:
        assert sorted(d.title for d in Dummy.all()) == ['0', '1', '2']
        assert Dummy(title='new').put().id() > max(k.id() for k in keys)
        assert datastore.changed()
    # With the mark of the ids allocated (``filestub.id_marks``).
    assert devfile.count_kinds(store) == {'Dummy': 4, 'LovelyGaeIdMark': 1}


def test_a_saved_file_loads_in_the_sdks_file_stub(store):
    fill(store)
    with local_datastore(store):
        assert Dummy.all().count() == 3  # and it loads here again
    bed = sdk_file_testbed(defaults.LOCAL_APP_ID, store)
    try:
        assert Dummy.all().count() == 3
    finally:
        bed.deactivate()


def test_the_librarys_own_entities_in_the_file_are_kept(store, capsys):
    fill(store)
    assert run(store, 'create', 'Dummy') == 0
    assert run(store, '--json', 'list') == 0
    assert snapshots_in(store) == 1
    kinds = devfile.count_kinds(store)
    assert kinds['Snapshot'] == 1 and kinds['RangeBackup'] == 1


def test_nothing_changed_nothing_written(store, capsys):
    fill(store)
    before = os.stat(store)
    assert run(store, 'worker') == 0
    assert os.stat(store).st_ino == before.st_ino


def test_create_refuses_a_kind_without_entities(store, capsys):
    fill(store)
    assert run(store, 'create', 'Dummy', 'Dumy') == 1
    assert capsys.readouterr() == ('', "lovely-gae: error: kind 'Dumy' has no "
                                   "entities in namespace '' of app "
                                   "lovely-gae-local\n")
    assert run(store, 'create', 'Dummy', '--namespace', 'other') == 1
    assert capsys.readouterr().err == (
        "lovely-gae: error: kind 'Dummy' has no entities in namespace "
        "'other' of app lovely-gae-local (it has some in namespace '')\n")
    assert snapshots_in(store) == 0
    assert run(store, '--json', 'create', 'Dummy', 'Dumy',
               '--allow-empty') == 0
    assert snapshots_in(store) == 1


def test_a_second_writer_is_refused_naming_the_holder(store, capsys):
    with local_datastore(store, command='lovely-gae create'):
        for command in (['create', '--allow-empty'], ['list']):
            assert run(store, *command) == 1
            assert capsys.readouterr().err == (
                'lovely-gae: error: datastore file %s is in use by '
                'lovely-gae create (pid %d): try again when it has finished\n'
                % (store, os.getpid()))
    assert run(store, 'create', '--allow-empty') == 0


def test_readers_share_the_file_and_keep_writers_out(store, capsys):
    fill(store)
    with local_datastore(store, save=False, command='lovely-gae list'):
        assert run(store, 'list') == 0
        assert run(store, 'create', 'Dummy') == 1
        assert 'in use by lovely-gae list' in capsys.readouterr().err
        with pytest.raises(DatastoreLocked):
            with local_datastore(store):
                pass
    assert snapshots_in(store) == 0


def test_the_lock_goes_with_its_process(store, tmp_path):
    """A holder killed with SIGKILL leaves no lock behind."""
    script = ('import sys, time\n'
              'from lovely_gae.local import local_datastore\n'
              'with local_datastore(sys.argv[1], command="holder"):\n'
              '    print("locked", flush=True)\n'
              '    time.sleep(60)\n')
    holder = subprocess.Popen([sys.executable, '-c', script, store],
                              env=dict(os.environ, PYTHONPATH=ROOT),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == 'locked\n'
        with pytest.raises(DatastoreLocked) as info:
            with local_datastore(store):
                pass
        assert info.value.holder == {'pid': holder.pid, 'command': 'holder',
                                     'url': None}
    finally:
        holder.kill()
        holder.communicate(timeout=30)
    with local_datastore(store):
        pass


def test_a_failed_save_prints_no_success(store, capsys, monkeypatch,
                                         tmp_path):
    fill(store)

    def read_only(src, dst):
        raise OSError(errno.EROFS, 'Read-only file system')
    monkeypatch.setattr(os, 'replace', read_only)
    monkeypatch.setattr(os, 'rename', read_only)
    assert run(store, 'create', 'Dummy') == 1
    assert capsys.readouterr() == (
        '', 'lovely-gae: error: datastore file %s: cannot save: Read-only '
        'file system\n' % store)
    assert left_in(tmp_path) == []
    monkeypatch.undo()
    assert snapshots_in(store) == 0


class FullDisk:
    """A file object whose writes fail as on a full disk."""

    def __init__(self, fileobj):
        self._file = fileobj

    def write(self, data):
        raise OSError(errno.ENOSPC, 'No space left on device')

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._file.close()


def test_a_full_disk_is_one_line_and_leaves_no_temp_file(store, capsys,
                                                         monkeypatch,
                                                         tmp_path):
    fill(store)
    with open(store, 'rb') as f:
        before = f.read()
    fdopen = os.fdopen
    monkeypatch.setattr(os, 'fdopen', lambda *a, **kw: FullDisk(
        fdopen(*a, **kw)))
    assert run(store, 'create', 'Dummy') == 1
    assert capsys.readouterr() == (
        '', 'lovely-gae: error: datastore file %s: cannot save: No space '
        'left on device\n' % store)
    assert left_in(tmp_path) == []
    with open(store, 'rb') as f:
        assert f.read() == before


def test_sigterm_during_a_save_leaves_no_temp_file(store, tmp_path):
    fill(store)
    with open(store, 'rb') as f:
        before = f.read()
    script = ('import os, signal, sys\n'
              'from lovely_gae import cli\n'
              'fdopen = os.fdopen\n'
              'def fdopen_then_sigterm(*args, **kwargs):\n'
              '    fileobj = fdopen(*args, **kwargs)\n'
              '    os.kill(os.getpid(), signal.SIGTERM)\n'
              '    return fileobj\n'
              'os.fdopen = fdopen_then_sigterm\n'
              'sys.exit(cli.main(sys.argv[1:]))\n')
    done = subprocess.run(
        [sys.executable, '-c', script, '--datastore', store, 'create',
         'Dummy'], env=dict(os.environ, PYTHONPATH=ROOT), cwd=str(tmp_path),
        capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (143, '', '')
    assert left_in(tmp_path) == []
    with open(store, 'rb') as f:
        assert f.read() == before


def test_a_closed_stdout_loses_nothing(store, capsys, monkeypatch):
    fill(store)

    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(errno.EPIPE, 'Broken pipe')

        def flush(self):
            pass

        def fileno(self):
            raise io.UnsupportedOperation('fileno')
    monkeypatch.setattr(sys, 'stdout', ClosedPipe())
    code = run(store, 'create', 'Dummy')
    monkeypatch.undo()
    assert snapshots_in(store) == 1
    assert (code, capsys.readouterr().err) == (141, '')


def test_create_into_a_closed_pipe_keeps_the_snapshot(store, tmp_path):
    fill(store)
    read_end, write_end = os.pipe()
    os.close(read_end)  # as `lovely-gae create Dummy | true` may find it
    try:
        done = subprocess.run(
            [sys.executable, '-m', 'lovely_gae.cli', '--datastore', store,
             'create', 'Dummy'], stdout=write_end, stderr=subprocess.PIPE,
            env=dict(os.environ, PYTHONPATH=ROOT), cwd=str(tmp_path),
            text=True, timeout=120)
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, '')
    assert snapshots_in(store) == 1


def test_datastore_that_is_a_directory_is_a_one_line_error(tmp_path, capsys):
    assert run(str(tmp_path), 'list') == 1
    assert capsys.readouterr().err == (
        'lovely-gae: error: datastore file %s: is a directory, not a file\n'
        % tmp_path)
    assert not os.path.exists(str(tmp_path) + '.lock')
    missing = str(tmp_path / 'no' / 'x.datastore')
    assert run(missing, 'list') == 1
    assert capsys.readouterr().err == (
        'lovely-gae: error: datastore file %s: no such directory: %s\n'
        % (missing, tmp_path / 'no'))


def test_save_reports_and_keeps_the_file(store, monkeypatch, tmp_path):
    fill(store)
    with local_datastore(store, save=False) as datastore:
        assert isinstance(datastore, LocalDatastore)
        assert datastore.save() is False  # nothing changed
        Dummy(title='x').put()
        monkeypatch.setattr(os, 'fsync', lambda fd: (_ for _ in ()).throw(
            OSError(errno.EIO, 'Input/output error')))
        with pytest.raises(DatastoreFileError, match='Input/output error'):
            datastore.save()
        assert left_in(tmp_path) == []
        monkeypatch.undo()
        assert datastore.save() is True
    assert devfile.count_kinds(store) == {'Dummy': 4, 'LovelyGaeIdMark': 1}



def test_a_link_to_the_file_locks_and_saves_the_file(store, tmp_path,
                                                     capsys):
    fill(store)
    alias = str(tmp_path / 'alias.datastore')
    os.symlink('data.datastore', alias)
    with local_datastore(store, command='lovely-gae serve'):
        assert run(alias, 'create', '--allow-empty') == 1
        assert capsys.readouterr().err == (
            'lovely-gae: error: datastore file %s is in use by lovely-gae '
            'serve (pid %d): try again when it has finished\n'
            % (store, os.getpid()))
    with local_datastore(alias, save=False):
        with pytest.raises(DatastoreLocked):
            with local_datastore(store):
                pass
    assert run(alias, 'create', 'Dummy') == 0
    assert os.readlink(alias) == 'data.datastore'  # still a link
    assert snapshots_in(store) == 1
    assert left_in(tmp_path) == ['alias.datastore']


def test_a_file_of_more_than_one_name_is_refused(store, tmp_path, capsys):
    fill(store)
    other = str(tmp_path / 'other.datastore')
    os.link(store, other)
    for path in (store, other):
        assert run(path, 'create', 'Dummy') == 1
        assert capsys.readouterr().err == (
            'lovely-gae: error: datastore file %s: has 2 names (hard '
            'links); use a file of one name\n' % path)
    os.unlink(other)
    assert snapshots_in(store) == 0


def test_the_testbed_takes_no_file_to_unpickle():
    """``start_testbed`` (the pytest plugin's, ``local_datastore``'s) takes
    no datastore file: the SDK's stub would unpickle it. A file is loaded
    by ``local_datastore``, through the library's parser (above)."""
    with pytest.raises(TypeError):
        local.start_testbed(datastore_file='snapshot.1')


def _file_with(path, entity_id):
    e = EntityProto()
    e.key.app = 'lovely-gae-local'
    element = e.key.path.element.add()
    element.type, element.id = 'K', entity_id
    e.entity_group.element.add().CopyFrom(element)
    with open(path, 'wb') as f:
        writer = DevFileWriter(f)
        writer.add_many([e.SerializeToString()])
        writer.close()


def test_a_negative_id_in_the_datastore_file_is_a_one_line_error(
        tmp_path, monkeypatch, capsys):
    """A key with a negative id is refused in one line, as every other
    damaged file is (the SDK's stub would raise BadArgumentError)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv('GAE_APPLICATION', raising=False)
    store = str(tmp_path / 'data.datastore')
    _file_with(store, -5)
    assert cli.main(['--datastore', store, 'list']) == 1
    assert capsys.readouterr().err == (
        'lovely-gae: error: datastore file %s: record 1 has a negative id\n'
        % store)


def test_an_upload_the_app_takes_leaves_a_file_that_loads(tmp_path,
                                                         monkeypatch):
    """An upload of a key production would refuse (a negative id) is a
    400: were it put and saved, no command could load the file again."""
    monkeypatch.delenv('GAE_APPLICATION', raising=False)
    store = str(tmp_path / 'data.datastore')
    e = EntityProto()
    e.key.app = 'whatever'
    element = e.key.path.element.add()
    element.type, element.id = 'K', -5
    e.entity_group.element.add().CopyFrom(element)
    record = e.SerializeToString()
    body = wire.storage.varint(len(record)) + record
    with local_datastore(store):
        res = TestApp(getApp()).post('/lovely.gae/upload', body,
                                     content_type=wire.CONTENT_TYPE,
                                     status=400)
    assert res.text == 'a key is incomplete, or its id -5 is not positive\n'
    with local_datastore(store, save=False):
        assert datastore.Query('K').Count() == 0


def test_loading_a_large_file_tells_its_progress(store):
    """``lovely-gae list`` on a file of many entities spends its time
    loading it: a terminal is shown a bar of the bytes loaded."""
    import io
    from lovely_gae.snapshot.progress import loading_bar
    fill(store, 4500)
    size = os.path.getsize(store)
    told = []
    with local_datastore(store, save=False,
                         progress=lambda done, total: told.append(
                             (done, total))):
        pass
    assert [total for _, total in told] == [size] * 3
    assert [done for done, _ in told] == sorted(
        done for done, _ in told) and told[-1] == (size, size)

    class Terminal(io.StringIO):
        def isatty(self):
            return True
    terminal = Terminal()
    bar = loading_bar(store, stream=terminal)
    for done, total in told:
        bar(done, total)
    assert 'loading %s' % store in terminal.getvalue()
    assert loading_bar(store, stream=io.StringIO()) is None  # a log
    assert loading_bar(store, json_output=True, stream=terminal) is None


def test_a_deleted_snapshots_id_never_comes_again(store, capsys):
    """The datastore never allocates an id twice; the SDK's file stub set
    its counters past the highest id stored as it read the file, so the id
    of the newest snapshot, deleted, came again with the next one: a file
    ``snapshot.605`` on disk would name another snapshot 605."""
    import json
    from tests.conftest import demo_into
    demo_into(store)
    capsys.readouterr()
    assert run(store, '--json', 'create', 'Customer', '--allow-empty') == 0
    newest = json.loads(capsys.readouterr().out)['id']
    assert run(store, 'delete', str(newest), '--yes') == 0
    capsys.readouterr()
    assert run(store, '--json', 'create', 'Customer', '--allow-empty') == 0
    assert json.loads(capsys.readouterr().out)['id'] > newest


def test_a_save_removes_the_temp_files_a_killed_save_left(store, capsys):
    """kill -9 or a power cut runs no handler: a save's temporary file
    stays beside the datastore file, for ever. The next save, which holds
    the file's lock alone, removes it; no other file goes."""
    directory, name = os.path.split(store)
    stale = os.path.join(directory, '.%s.0123456789abcdef.tmp' % name)
    others = [os.path.join(directory, other) for other in (
        '.%s.notours.tmp' % name, '.other.0123456789abcdef.tmp',
        '%s.0123456789abcdef.tmp' % name)]
    for path in [stale] + others:
        with open(path, 'wb') as file:
            file.write(b'half a datastore file')
    assert run(store, 'create', 'Customer', '--allow-empty') == 0
    assert os.path.exists(store) and not os.path.exists(stale)
    assert all(os.path.exists(path) for path in others)
