"""Hostile and damaged files on the file paths: the datastore file given by
``--datastore``, and the files ``inspect``, ``verify`` and ``upload`` read."""
import errno
import fcntl
import json
import os

import pytest
from google.appengine.api import datastore

from lovely_gae import cli, filelock
from lovely_gae.snapshot.app.access import ERROR_HEADER
from lovely_gae.snapshot.transfer import remote, wire
from lovely_gae.snapshot.transfer.devfile import DevFileWriter
from lovely_gae.webserver import ThreadedServer
from tests.conftest import demo_into
from tests.conftest import run_cli as run
from tests import test_transfer_trust


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


hostile = test_transfer_trust.hostile  # a fixture: an app that answers


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


@pytest.mark.parametrize('answer, problem', [
    (b'{}', '["put"] is missing'),
    (b'[]', 'the answer is [], not an object'),
    (b'{"put": "3"}', '["put"] is "3", not an integer'),
    (b'{"put": true}', '["put"] is true, not an integer'),
    (b'{"put": 2}', None)])
def test_an_upload_answer_not_the_apps_is_a_one_line_error(
        hostile, tmp_path, capsys, answer, problem):
    path = upload_file(str(tmp_path / 'snapshot.7'))
    hostile.serve('/lovely.gae/upload', answer,
                  headers=[('Content-Type', 'application/json')])
    assert upload(hostile, path) == 1
    err = capsys.readouterr().err
    if problem is None:  # of the shape, not the count put
        assert err == ('lovely-gae: error: %s/lovely.gae/upload answered an '
                       'upload of 3 entities with 2, not the count it put\n'
                       % hostile.url)
    else:
        assert err == ("lovely-gae: error: POST %s/lovely.gae/upload "
                       "answered JSON of another shape than a lovely_gae "
                       "app's: %s\n" % (hostile.url, problem))


class Stops:
    """An app that takes ``takes`` uploads of one entity, then answers
    ``status`` with the app's mark of an error."""

    def __init__(self, takes, status):
        self.takes, self.status = takes, status

    def __call__(self, environ, start_response):
        environ['wsgi.input'].read(int(environ.get('CONTENT_LENGTH') or 0))
        if self.takes:
            self.takes -= 1
            start_response('200 OK', [('Content-Type', 'application/json')])
            return [b'{"put": 1}']
        start_response(self.status, [('Content-Type', 'text/plain'),
                                     (ERROR_HEADER, 'error')])
        return [b'no room\n']


@pytest.mark.parametrize('status, line, code', [
    ('400 Bad Request', 'error: no room (HTTP 400)', 1),
    ('503 Service Unavailable', 'interrupted', 130),  # Ctrl-C in a retry
])
def test_an_upload_that_stops_says_what_it_put(
        gae_testbed, tmp_path, capsys, monkeypatch, status, line, code):
    path = upload_file(str(tmp_path / 'snapshot.7'))
    monkeypatch.setattr(wire, 'BATCH_BYTES', 1)  # an entity a request

    def ctrl_c(seconds):
        raise KeyboardInterrupt
    monkeypatch.setattr(remote.time, 'sleep', ctrl_c)
    with ThreadedServer(Stops(2, status)) as server:
        server.token = 's3cret'
        assert upload(server, path) == code
    assert capsys.readouterr().err == (
        'lovely-gae: %s; at least 2 of 3 entities were put before it '
        'stopped; run the same command again to put them all\n' % line)


@pytest.mark.parametrize('through', ['', 'link'])
def test_a_file_is_not_uploaded_into_itself(tmp_path, capsys, through):
    """The datastore file given as the file to upload: it would be loaded,
    put into itself under the local app id, and saved, a downloaded file
    doubled and holding the library's id marks (never to upload again)."""
    path = upload_file(str(tmp_path / 'snapshot.7'))
    before = sorted(os.listdir(tmp_path)), open(path, 'rb').read()
    store = path
    if through:
        store = str(tmp_path / 'dev.datastore')
        os.symlink(path, store)
        before = sorted(os.listdir(tmp_path)), before[1]
    assert run(store, 'upload', '--yes', path) == 1
    assert capsys.readouterr().err == (
        'lovely-gae: error: %s is the datastore file (--datastore %s): '
        'upload it into another one\n' % (path, store))
    assert (sorted(os.listdir(tmp_path)), open(path, 'rb').read()) == before


def test_an_out_dir_that_is_a_file_is_named_so(store, capsys, tmp_path):
    demo_into(store)
    with open(store, 'rb') as fileobj:
        content = fileobj.read()
    for out in (store, str(tmp_path / 'link')):
        if out != store:
            os.symlink(store, out)
        assert run(store, 'download', out) == 1
        assert capsys.readouterr().err == (
            "lovely-gae: error: invalid out_dir %r: is a file, not a "
            "directory\n" % out)
    with open(store, 'rb') as fileobj:
        assert fileobj.read() == content


def test_an_upload_from_a_pipe_is_refused_before_a_byte_is_read(
        store, capsys, tmp_path):
    """``upload <(gunzip -c snapshot.7.gz)``: a pipe is read once, and an
    upload reads its file twice (to check it whole, then to send it)."""
    read, write_end = os.pipe()
    try:
        os.write(write_end, b'\x80\x03]')
        os.close(write_end)  # the pipe ends there: nothing waits for more
        pipe = '/dev/fd/%d' % read
        assert run(store, 'upload', '--yes', pipe) == 1
        assert capsys.readouterr().err == (
            'lovely-gae: error: %s is not a regular file: an upload reads '
            'it twice, to check it whole and to send it; save it to a file '
            'first\n' % pipe)
        assert os.read(read, 10) == b'\x80\x03]'  # not a byte read
    finally:
        os.close(read)
    assert os.listdir(tmp_path) == []  # no datastore, no lock made


@pytest.mark.parametrize('option, value, reason', [
    ('--target-app-id', '', 'not an app id, such as dev~my-app'),
    ('--target-app-id', 'a b/../x', 'not an app id, such as dev~my-app'),
    ('--target-app-id', 'Dev~App', 'not an app id, such as dev~my-app'),
    ('--target-namespace', 'bad ns!', 'not a namespace the datastore takes '
     '(at most 100 letters, digits, ".", "-" and "_")'),
])
def test_a_target_the_datastore_refuses_is_refused_before_a_download(
        store, capsys, tmp_path, option, value, reason):
    """Else the file is written, and refused by verify and upload, or its
    keys of an app no datastore has."""
    demo_into(store)
    out = tmp_path / 'out'
    assert run(store, 'download', option, value, str(out)) == 1
    assert capsys.readouterr().err == (
        'lovely-gae: error: invalid %s %r: %s\n' % (
            option[2:].replace('-', '_'), value, reason))
    assert not out.exists()


@pytest.mark.parametrize('what', ['link', 'directory'])
def test_a_lock_file_that_is_no_file_of_its_own_is_named_so(
        store, capsys, tmp_path, what):
    """The lock is opened without following a link (it is written to): a
    link or a directory there is named for what it is, not ELOOP's 'Too
    many levels of symbolic links'."""
    demo_into(store)
    lock = store + '.lock'
    if what == 'link':
        os.symlink(str(tmp_path / 'elsewhere'), lock)
    else:
        os.mkdir(lock)
    assert run(store, 'list') == 1
    assert capsys.readouterr().err == (
        'lovely-gae: error: datastore file %s: its lock file %s is a %s, '
        'not a file; remove it\n' % (store, lock, {
            'link': 'symbolic link'}.get(what, what)))
    assert not (tmp_path / 'elsewhere').exists()


def test_a_refused_first_command_leaves_nothing_behind(store, tmp_path,
                                                       capsys):
    """No datastore file, no lock file beside it: a lock beside no file
    would be left for nothing."""
    bad = tmp_path / 'snapshot.7'
    write(str(bad), [spoiled('kind')])
    assert run(store, 'upload', '--yes', str(bad)) == 1
    assert run(store, 'create', 'Nope') == 1
    assert run(store, 'restore', '--yes', '5') == 1
    assert os.listdir(tmp_path) == ['snapshot.7']
    assert capsys.readouterr().err.count('\n') == 3


def test_a_lock_removed_by_its_holder_is_taken_anew(tmp_path, monkeypatch):
    """One that opened the lock file as its holder removed it, and locked
    it after, holds the lock of no file: it opens the file of that name
    again (else it and the next writer would both hold 'the' lock)."""
    path = str(tmp_path / 'data.datastore')
    real_flock, replaced = fcntl.flock, []

    def flock(fd, operation):
        if not replaced:  # the holder lets go between our open and flock
            replaced.append(os.fstat(fd).st_ino)
            holder = filelock.FileLock(path, exclusive=True)
            holder.release(remove=True)
            filelock.FileLock(path, exclusive=True).release()  # a new one
        return real_flock(fd, operation)
    monkeypatch.setattr(filelock.fcntl, 'flock', flock)
    lock = filelock.FileLock(path, exclusive=True)
    try:
        assert os.fstat(lock.fd).st_ino == os.stat(path + '.lock').st_ino
        assert replaced and replaced[0] != os.fstat(lock.fd).st_ino
    finally:
        lock.release()


@pytest.fixture
def unwritable(monkeypatch):
    """``unwritable(code)``: from now on no file can be made, nor opened
    to write (``code``: EROFS, a read-only file system; EACCES, a
    directory of another user), as if the datastore file were there."""
    def make(code):
        real_open = os.open

        def refusing(path, flags, *args, **kwargs):
            if flags & (os.O_CREAT | os.O_RDWR | os.O_WRONLY):
                raise OSError(code, os.strerror(code), path)
            return real_open(path, flags, *args, **kwargs)
        monkeypatch.setattr(filelock.os, 'open', refusing)
    return make


@pytest.mark.parametrize('code', [errno.EROFS, errno.EACCES])
def test_a_datastore_file_where_none_may_write_is_read(
        store, capsys, unwritable, code):
    """Read-only media, or a directory of another user: commands that only
    read go on without a lock file, as no writer can be there; those that
    write say why they cannot."""
    demo_into(store)
    unwritable(code)
    assert run(store, '--json', 'list') == 0
    assert json.loads(capsys.readouterr().out)[0]['status'] == 'finished'
    assert not os.path.exists(store + '.lock')
    assert run(store, 'create', 'Customer') == 1
    assert capsys.readouterr().err == 'lovely-gae: error: [Errno %d] %s: ' \
        "'%s.lock'\n" % (code, os.strerror(code), store)


def test_a_lock_file_this_user_may_not_write_is_shared_by_readers(
        store, unwritable):
    """Opened to read, it still keeps writers out while a reader holds it:
    a shared lock needs no more."""
    demo_into(store)
    filelock.FileLock(store, exclusive=True).release()  # another user's
    unwritable(errno.EACCES)
    reader = filelock.FileLock(store, exclusive=False)
    try:
        fd = os.open(store + '.lock', os.O_RDONLY)  # as a writer sees it
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    finally:
        reader.release()
