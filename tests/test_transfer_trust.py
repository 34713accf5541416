"""What a download trusts of a server, and of the datastore it reads: nothing
it has not checked. A hostile server here is a small WSGI app on a real
socket that answers whatever the test tells it to."""
import bz2
import hashlib
import json
import os
import socket
import threading
import tracemalloc
from urllib.parse import unquote

import pytest
from google.appengine.api import datastore
from google.appengine.ext import db

from benchmarks import startup
from lovely_gae import cli, defaults, taskstore
from lovely_gae.exceptions import (BadManifest, LovelyGaeError,
                                   RangeCorrupted, SnapshotIncomplete,
                                   UnsafePath)
from lovely_gae.webserver import ThreadedServer
from lovely_gae.snapshot import client, storage
from lovely_gae.snapshot.client import quiet
from lovely_gae.snapshot.models import RangeBackup
from lovely_gae.snapshot.transfer.manifest import ManifestPages
from lovely_gae.snapshot.transfer.remote import RemoteClient, RemoteError
from lovely_gae.snapshot.app.data import range_path
from tests.conftest import Dummy

SNAPSHOT_ID = 7


class Hostile:
    """A WSGI app answering each path with what ``routes`` holds for it,
    and logging every request: ``(method, path, Authorization header)``."""

    def __init__(self):
        self.routes, self.log = {}, []

    def __call__(self, environ, start_response):
        path = environ['PATH_INFO']
        if environ.get('QUERY_STRING'):
            path += '?' + environ['QUERY_STRING']
        length = int(environ.get('CONTENT_LENGTH') or 0)
        self.body = environ['wsgi.input'].read(length)
        self.log.append((environ['REQUEST_METHOD'], path,
                         environ.get('HTTP_AUTHORIZATION')))
        status, headers, body = self.routes.get(
            path, ('404 Not Found', [], b'no such page\n'))
        start_response(status, headers + [
            ('Content-Length', str(len(body)))])
        return [body]

    def serve(self, path, body, status='200 OK', headers=()):
        self.routes[path] = (status, list(headers), body)

    def serve_manifest(self, manifest, per_page=None):
        """Serve ``manifest`` in pages of ``per_page`` ranges (None: one)."""
        self.manifest = manifest
        self.serve_pages(pages_of(manifest, per_page))

    def serve_pages(self, pages):
        """Serve each page where the ``next`` of the one before leads."""
        paths = ['%s/manifest' % name for name in (SNAPSHOT_ID, 'latest')]
        for page in pages:
            for path in paths:
                self.serve('/lovely.gae/snapshots/' + path,
                           json.dumps(page).encode(),
                           headers=[('Content-Type', 'application/json')])
            paths = ['%d/manifest?after=%s' % (SNAPSHOT_ID, page['next'])]

    def serve_snapshot(self, ranges, codec='bz2', kind='Dummy',
                       per_page=None):
        """Serve a manifest of ``ranges`` (each a list of records, or the
        raw bytes a range decompresses to) and their stored bytes."""
        entries = [self.serve_range(position, records, codec, kind)
                   for position, records in enumerate(ranges)]
        self.serve_manifest({'snapshot': {
            'id': SNAPSHOT_ID, 'status': 'finished', 'kinds': [kind],
            'namespace': '', 'range_spans': {kind: [[0, len(ranges)]]},
            'progress': {'entities': sum(e['count'] for e in entries),
                         'bytes': sum(e['size'] for e in entries)}},
            'ranges': entries}, per_page)
        return self.manifest

    def manifest_requests(self):
        return [path for _, path, _ in self.log if '/manifest' in path]

    def serve_range(self, position, records, codec, kind):
        if isinstance(records, bytes):
            raw_size, count = len(records), 0
            stored = CODEC_OF[codec](records)
        else:
            writer = storage.RangeWriter(codec)
            parts = list(writer.add_all(records))
            stored = b''.join(parts + writer.close())
            raw_size, count = writer.raw_size, writer.count
        name = RangeBackup.make_name(SNAPSHOT_ID, kind, position,
                                     len(stored))
        path = range_path(SNAPSHOT_ID, name)
        self.serve(unquote(path), stored)
        return {'name': name, 'kind': kind, 'position': position,
                'count': count, 'raw_size': raw_size, 'size': len(stored),
                'sha256': hashlib.sha256(stored).hexdigest(),
                'codec': codec, 'format': storage.FORMAT, 'path': path}

    def range_requests(self):
        return [path for _, path, _ in self.log if '/ranges/' in path]


CODEC_OF = {'bz2': bz2.compress, 'none': bytes}


def pages_of(manifest, per_page=None):
    """``manifest`` as the pages an app serves, ``per_page`` ranges each."""
    ranges = manifest['ranges']
    per_page = per_page or max(len(ranges), 1)
    starts = range(0, max(len(ranges), 1), per_page)
    return [{'snapshot': manifest['snapshot'],
             'ranges': ranges[start:start + per_page],
             'next': 'p%d' % (start + per_page)
             if start + per_page < len(ranges) else None}
            for start in starts]


@pytest.fixture
def hostile(gae_testbed):
    app = Hostile()
    with ThreadedServer(app) as server:
        app.url = server.url
        yield app


def record(name, namespace='', kind='Dummy', **values):
    entity = datastore.Entity(kind, name=name, namespace=namespace)
    entity.update(values)
    return entity.ToPb().SerializeToString()


def download(url, out, **kwargs):
    remote = RemoteClient(url, 's3cret', retries=0, timeout=(5, 10))
    return client.download_snapshot(str(out), url=remote, progress=quiet,
                                    **kwargs)


def part_files(out):
    partial = out / ('.snapshot.%d.partial' % SNAPSHOT_ID)
    return sorted(os.listdir(partial)) if partial.exists() else []


# A1: no entity of the library's namespace gets into a file.

@pytest.mark.parametrize('moved', [{}, {'target_app_id': 'dev~x'}])
def test_a_hostile_servers_task_entity_never_reaches_the_file(
        hostile, tmp_path, moved):
    task = record('evil', defaults.NAMESPACE, taskstore.KIND,
                  function='os:system', args='["touch /tmp/pwned"]')
    manifest = hostile.serve_snapshot([[record('a'), record('b')],
                                       [record('c'), task]])
    bad = manifest['ranges'][1]['name']
    with pytest.raises(RangeCorrupted) as info:
        download(hostile.url, tmp_path, **moved)
    assert str(info.value) == ("range %s: entities of namespace "
                               "'lovely_gae' are the library's own" % bad)
    assert os.listdir(tmp_path) == ['.snapshot.%d.partial' % SNAPSHOT_ID]
    assert len(part_files(tmp_path)) == 1  # the good range, to resume from


def test_a_target_namespace_of_the_librarys_own_is_refused(hostile,
                                                           tmp_path):
    hostile.serve_snapshot([[record('a')]])
    with pytest.raises(RangeCorrupted, match="the library's own"):
        download(hostile.url, tmp_path, target_namespace=defaults.NAMESPACE)
    assert not (tmp_path / ('snapshot.%d' % SNAPSHOT_ID)).exists()


def replace_range(backup, records):
    """Store ``records`` as ``backup``'s range, recorded as consistent."""
    writer = storage.RangeWriter(backup.codec)
    backup.data = b''.join(list(writer.add_all(records)) + writer.close())
    backup.count, backup.raw_size = writer.count, writer.raw_size
    backup.size, backup.sha256 = writer.size, writer.sha256
    backup.put()


def test_a_local_range_holding_the_librarys_entities_is_refused(
        make_entities, finished_snapshot, tmp_path):
    make_entities(Dummy, 3)
    snap = finished_snapshot(['Dummy'])
    [backup] = snap.range_backups()
    replace_range(backup, [record('a'), record('t', defaults.NAMESPACE,
                                                 taskstore.KIND)])
    with pytest.raises(RangeCorrupted, match="library's own"):
        client.download_snapshot(str(tmp_path), snap.id, progress=quiet)
    assert os.listdir(tmp_path) == []


# B1: decompression is bounded by what the range recorded.

def test_a_bz2_bomb_fails_early_in_bounded_memory(hostile, tmp_path):
    writer = storage.RangeWriter('none')
    legit = b''.join(list(writer.add_all([record('a'), record('b')]))
                     + writer.close())
    big = storage.varint(10 ** 6) + bytes(10 ** 6)  # each one entity's size
    manifest = hostile.serve_snapshot([legit + big * 64])
    entry = manifest['ranges'][0]
    assert entry['size'] < 2000
    entry.update(count=2, raw_size=len(legit))
    manifest['snapshot']['progress']['entities'] = 2
    hostile.serve_manifest(manifest)
    tracemalloc.start()
    try:
        with pytest.raises(RangeCorrupted) as info:
            download(hostile.url, tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(info.value) == (
        'range %s: stored range decompresses to more than the %d bytes '
        'recorded' % (entry['name'], len(legit)))
    assert peak < 16 << 20
    assert os.listdir(tmp_path) == ['.snapshot.%d.partial' % SNAPSHOT_ID]


def test_a_record_longer_than_an_entity_is_refused_before_it_is_read(
        hostile, tmp_path):
    size = 64 << 20
    manifest = hostile.serve_snapshot([storage.varint(size) + bytes(size)])
    entry = manifest['ranges'][0]
    entry.update(count=100, raw_size=size + 4)  # as much as it could be
    manifest['snapshot']['progress']['entities'] = 100
    hostile.serve_manifest(manifest)
    tracemalloc.start()
    try:
        with pytest.raises(RangeCorrupted, match='record of %d bytes is '
                           'larger than an entity can be' % size):
            download(hostile.url, tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20


@pytest.mark.parametrize('change, reason', [
    ({'count': 3}, 'stored range holds 2 records, 3 were recorded'),
    ({'raw_size': 10 ** 6}, 'stored range decompresses to %d bytes, '
                            '1000000 were recorded'),
])
def test_a_range_must_hold_what_it_recorded(hostile, tmp_path, change,
                                            reason):
    manifest = hostile.serve_snapshot([[record('a'), record('b')]])
    entry = manifest['ranges'][0]
    raw = entry['raw_size']
    entry.update(change)
    manifest['snapshot']['progress']['entities'] = entry['count']
    hostile.serve_manifest(manifest)
    with pytest.raises(RangeCorrupted) as info:
        download(hostile.url, tmp_path)
    assert info.value.reason == (reason % raw if '%' in reason else reason)


@pytest.mark.parametrize('codec', ['none', 'zlib', 'bz2', 'lzma'])
def test_records_come_back_a_step_at_a_time_and_nothing_after_the_end(
        codec, monkeypatch):
    monkeypatch.setattr(storage, '_STEP', 100)
    records = [os.urandom(n) for n in (0, 1, 300, 5000, 20000, 7)]
    monkeypatch.setattr(defaults, 'PART_SIZE', 1000)
    writer = storage.RangeWriter(codec)
    parts = list(writer.add_all(records)) + writer.close()
    assert list(storage.iter_records(parts, codec, writer.raw_size,
                                     len(records))) == records
    if codec != 'none':
        with pytest.raises(ValueError, match='goes on after its end'):
            list(storage.iter_records(parts + [b'more'], codec))


def test_a_length_that_is_no_varint_is_refused():
    with pytest.raises(ValueError, match='is no varint'):
        list(storage.iter_records([b'\xff' * 11], 'none'))


# B2: only the snapshot's own ranges, on the same app, are asked for.

def bad_path(entry):
    return {'path': entry['path'].replace('/lovely.gae', '@evil.example:80')}


@pytest.mark.parametrize('spoil', [
    lambda e: {'path': '.attacker.example/x'},
    bad_path,
    lambda e: {'path': e['path'].replace('/%d/' % SNAPSHOT_ID, '/8/')},
    lambda e: {'path': e['path'] + '/../../../x'},
    lambda e: {'name': e['name'] + '/x'},
    lambda e: {'kind': 'Other'},
    lambda e: {'position': True},
    lambda e: {'count': -1},
    lambda e: {'size': '12'},
    lambda e: {'raw_size': 10 ** 12},
    lambda e: {'sha256': 'a' * 62 + '\r\n'},
    lambda e: {'codec': 'pickle'},
    lambda e: {'format': 'entityproto-delimited/2'},
    lambda e: {'path': None},
])
def test_a_manifest_entry_that_is_not_the_snapshots_own_is_refused(
        hostile, tmp_path, spoil):
    manifest = hostile.serve_snapshot([[record('a')]])
    manifest['ranges'][0].update(spoil(manifest['ranges'][0]))
    hostile.serve_manifest(manifest)
    with pytest.raises(BadManifest) as info:
        download(hostile.url, tmp_path)
    assert str(info.value).startswith('manifest of snapshot %d: range 0: '
                                      % SNAPSHOT_ID)
    assert '\n' not in str(info.value)
    assert hostile.range_requests() == []
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('spoil, reason', [
    (lambda s: s.update(id=8), 'it is the manifest of snapshot 8'),
    (lambda s: s.update(status='storing'), "the snapshot is 'storing', "
                                           "not finished"),
    (lambda s: s.update(namespace=defaults.NAMESPACE),
     "namespace 'lovely_gae' is the library's own"),
    (lambda s: s['range_spans'].update(Dummy='1'),
     "range_spans of Dummy is '1', not a list"),
    (lambda s: s['range_spans'].update(Dummy=[[0, 1], [0, 1]]),
     "range_spans of 'Dummy': [[0, 1], [0, 1]] are no spans of positions"),
    (lambda s: s.update(kinds=['Dummy', 'Other']),
     "its kinds ['Dummy', 'Other'] are not those it counted ranges of"),
    (lambda s: s.update(kinds=['\x1b[2J']),
     "its kinds ['\\x1b[2J'] are not all names of kinds"),
])
def test_a_manifest_of_another_snapshot_is_refused(hostile, tmp_path, spoil,
                                                   reason):
    manifest = hostile.serve_snapshot([[record('a')]])
    spoil(manifest['snapshot'])
    hostile.serve_manifest(manifest)
    with pytest.raises(BadManifest) as info:
        download(hostile.url, tmp_path, snapshot_id=SNAPSHOT_ID)
    assert info.value.reason == reason
    assert hostile.range_requests() == []


@pytest.mark.parametrize('where', ['latest/manifest', 'ranges/'])
def test_a_redirect_is_never_followed_so_the_token_stays(hostile, tmp_path,
                                                         where):
    elsewhere = Hostile()
    with ThreadedServer(elsewhere) as other:
        manifest = hostile.serve_snapshot([[record('a')]])
        [path] = [p for p in hostile.routes if where in p]
        hostile.serve(path, b'', '302 Found',
                      [('Location', other.url + path)])
        elsewhere.serve_manifest(manifest)
        with pytest.raises(RemoteError) as info:
            download(hostile.url, tmp_path)
    assert info.value.status == 302
    assert str(info.value) == ('redirected to %s%s; not followed, use that '
                               'URL if you trust it (HTTP 302)'
                               % (other.url, path))
    assert elsewhere.log == []
    assert not (tmp_path / ('snapshot.%d' % SNAPSHOT_ID)).exists()


# C1: every range of every kind, or nothing.

def test_a_local_download_of_a_snapshot_missing_a_range_writes_nothing(
        make_entities, finished_snapshot, tmp_path):
    make_entities(Dummy, 100)
    snap = finished_snapshot(['Dummy'], batchsize=10)
    db.delete(snap.range_backups('Dummy')[3].key())
    with pytest.raises(SnapshotIncomplete) as info:
        client.download_snapshot(str(tmp_path), snap.id, progress=quiet)
    assert str(info.value) == ("snapshot %d is incomplete: kind 'Dummy' "
                               "lacks 1 of its 10 ranges (positions 3)"
                               % snap.id)
    assert os.listdir(tmp_path) == []


def test_a_local_range_holding_fewer_entities_writes_nothing(
        make_entities, finished_snapshot, tmp_path):
    make_entities(Dummy, 20)
    snap = finished_snapshot(['Dummy'], batchsize=10)
    backup = snap.range_backups('Dummy')[1]
    records = list(backup.iter_records())
    replace_range(backup, records[:-1])  # consistent in itself
    with pytest.raises(SnapshotIncomplete, match='its ranges hold 19 '
                       'entities, it recorded 20'):
        client.download_snapshot(str(tmp_path), snap.id, progress=quiet)
    assert os.listdir(tmp_path) == []


def test_an_http_download_of_a_snapshot_missing_a_range_writes_nothing(
        make_entities, finished_snapshot, snapshot_server, tmp_path):
    make_entities(Dummy, 100)
    snap = finished_snapshot(['Dummy'], batchsize=10)
    db.delete(snap.range_backups('Dummy')[3].key())
    # The app may refuse such a manifest itself; either way, no file.
    with pytest.raises(LovelyGaeError):
        client.download_snapshot(str(tmp_path), snap.id,
                                 url=snapshot_server.url,
                                 token=snapshot_server.token, progress=quiet)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('spoil, reason', [
    (lambda m: m['ranges'].pop(1),
     "kind 'Dummy' lacks 1 of its 3 ranges (positions 1)"),
    (lambda m: m['ranges'].__setitem__(1, m['ranges'][0]),
     "kind 'Dummy' has 3 ranges, it recorded 3"),
    (lambda m: m['snapshot']['progress'].update(entities=4),
     'its ranges hold 3 entities, it recorded 4'),
    (lambda m: m['snapshot']['range_spans'].update(Dummy=[[0, 10 ** 12]]),
     "kind 'Dummy' lacks 999999999997 of its 1000000000000 ranges "
     "(positions 3, 4, 5, 6, 7, ...)"),
])
def test_a_manifest_missing_ranges_is_refused_before_any_is_fetched(
        hostile, tmp_path, spoil, reason):
    manifest = hostile.serve_snapshot([[record('a')], [record('b')],
                                       [record('c')]])
    spoil(manifest)
    hostile.serve_manifest(manifest)
    with pytest.raises(SnapshotIncomplete) as info:
        download(hostile.url, tmp_path)
    assert info.value.reason == reason
    assert hostile.range_requests() == []
    assert os.listdir(tmp_path) == []


# G5: partial downloads are private, and no link is followed.

def test_partial_downloads_are_for_this_user_alone(hostile, tmp_path):
    manifest = hostile.serve_snapshot([[record('a')], [record('b')]])
    manifest['ranges'][1]['sha256'] = '0' * 64
    hostile.serve_manifest(manifest)
    with pytest.raises(RangeCorrupted):
        download(hostile.url, tmp_path)
    partial = tmp_path / ('.snapshot.%d.partial' % SNAPSHOT_ID)
    assert os.stat(partial).st_mode & 0o777 == 0o700
    [part] = part_files(tmp_path)
    assert os.stat(partial / part).st_mode & 0o777 == 0o600


def test_a_partial_directory_that_is_a_link_or_open_is_refused(hostile,
                                                               tmp_path):
    hostile.serve_snapshot([[record('a')]])
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    out = tmp_path / 'out'
    out.mkdir()
    partial = out / ('.snapshot.%d.partial' % SNAPSHOT_ID)
    partial.symlink_to(elsewhere)
    with pytest.raises(UnsafePath, match='is a symbolic link; remove it'):
        download(hostile.url, out)
    assert os.listdir(elsewhere) == []
    partial.unlink()
    partial.mkdir(0o755)
    os.chmod(partial, 0o755)
    with pytest.raises(UnsafePath, match=r'is open to other users \(mode '
                       r'755\); remove it'):
        download(hostile.url, out)
    assert os.listdir(partial) == []


@pytest.mark.skipif(os.geteuid() != 0, reason='needs root to give it away')
def test_a_partial_directory_of_another_user_is_refused(hostile, tmp_path):
    hostile.serve_snapshot([[record('a')]])
    partial = tmp_path / ('.snapshot.%d.partial' % SNAPSHOT_ID)
    partial.mkdir(0o700)
    os.chown(partial, 12345, -1)
    with pytest.raises(UnsafePath, match='belongs to another user'):
        download(hostile.url, tmp_path)
    assert os.listdir(partial) == []


def test_a_part_file_that_is_a_link_is_never_followed(hostile, tmp_path):
    manifest = hostile.serve_snapshot([[record('a')]])
    victim = tmp_path / 'victim'
    victim.write_bytes(b'precious')
    out = tmp_path / 'out'
    out.mkdir()
    partial = out / ('.snapshot.%d.partial' % SNAPSHOT_ID)
    partial.mkdir(0o700)
    part = client._part_path(str(partial), manifest['ranges'][0]['name'])
    os.symlink(victim, part)
    with pytest.raises(UnsafePath, match='is a symbolic link'):
        download(hostile.url, out)
    assert victim.read_bytes() == b'precious'


def test_the_file_reaches_the_disk_before_its_name_and_its_name_after(
        make_entities, finished_snapshot, tmp_path, monkeypatch):
    import stat
    make_entities(Dummy, 3)
    snap = finished_snapshot(['Dummy'])
    events = []
    real_fsync, real_link = os.fsync, os.link

    def fsync(fd):
        kind = 'dir' if stat.S_ISDIR(os.fstat(fd).st_mode) else 'file'
        events.append(('fsync', kind))
        return real_fsync(fd)

    def link(source, target, **kwargs):
        events.append(('link', os.path.basename(target)))
        return real_link(source, target, **kwargs)
    monkeypatch.setattr(os, 'fsync', fsync)
    monkeypatch.setattr(os, 'link', link)
    client.download_snapshot(str(tmp_path), snap.id, progress=quiet)
    assert events == [('fsync', 'file'), ('link', 'snapshot.%d' % snap.id),
                      ('fsync', 'dir')]


# B3: upload bodies and the call to create a snapshot.

def test_an_upload_body_holds_at_most_a_requests_entities():
    from lovely_gae.snapshot.transfer import wire
    counts = [count for _, count in wire.batches([b'x'] * 1234)]
    assert counts == [500, 500, 234]
    assert defaults.MAX_REQUEST_ENTITIES == 500


@pytest.mark.parametrize('allow_empty, sent', [(True, None),
                                               (False, 'false')])
def test_create_snapshot_can_refuse_empty_kinds(hostile, allow_empty, sent):
    from urllib.parse import parse_qs
    answer = json.dumps(startup.SNAPSHOT).encode()
    hostile.serve('/lovely.gae/snapshots', answer, '201 Created',
                  [('Content-Type', 'application/json')])
    remote = RemoteClient(hostile.url, 's3cret')
    remote.create_snapshot(['Dummy'], allow_empty=allow_empty)
    form = parse_qs(hostile.body.decode())
    assert form.get('allow_empty') == ([sent] if sent else None)
    assert form['kinds'] == ['Dummy']


def test_a_range_holding_other_kinds_and_namespaces_is_refused(hostile,
                                                               tmp_path):
    """The manifest says snapshot 7 is kind Dummy of namespace ''; a range
    that holds a ``User`` of namespace ``billing`` is refused, as a restore
    refuses it, and no file is left: an upload of the file would put a
    kind the user never downloaded."""
    smuggled = record('root', namespace='billing', kind='User', admin=True)
    hostile.serve_snapshot([[record('a'), smuggled]])
    with pytest.raises(RangeCorrupted, match='outside the range'):
        download(hostile.url, tmp_path)
    assert not [name for name in os.listdir(tmp_path)
                if name.startswith('snapshot.')]


def test_a_range_of_records_that_are_no_entities_is_refused(hostile,
                                                            tmp_path):
    """Records that are no entities are refused when they come, not found
    out when the file is loaded."""
    hostile.serve_snapshot([[record('a'), b'\xff' * 40]])
    with pytest.raises(RangeCorrupted):
        download(hostile.url, tmp_path)


def test_a_range_claiming_a_huge_stored_size_is_refused_unfetched():
    """A range of 1 entity of 100 bytes that claims 10**12 stored bytes is
    refused before any byte of it is fetched."""
    page = {'snapshot': {
        'id': SNAPSHOT_ID, 'status': 'finished', 'kinds': ['Dummy'],
        'namespace': '', 'range_spans': {'Dummy': [[0, 1]]},
        'progress': {'entities': 1, 'bytes': 10 ** 12}}, 'next': None}
    name = RangeBackup.make_name(SNAPSHOT_ID, 'Dummy', 0, 10 ** 12)
    page['ranges'] = [{
        'name': name, 'kind': 'Dummy', 'position': 0, 'count': 1,
        'raw_size': 100, 'size': 10 ** 12, 'sha256': '0' * 64,
        'codec': 'none', 'format': storage.FORMAT,
        'path': range_path(SNAPSHOT_ID, name)}]
    pages = ManifestPages(lambda snapshot_id, after: page, SNAPSHOT_ID)
    with pytest.raises(BadManifest, match='size 1000000000000 is more '
                       'than none makes of 100 bytes'):
        list(pages)


@pytest.mark.parametrize('length', [b'\xb2', b'9' * 5000])
def test_a_content_length_int_cannot_read_is_a_one_line_error(length):
    """'²' is a digit to ``isdigit`` and not to ``int``, and 5000 digits
    exceed ``int``'s limit: either is a one-line ``RemoteError``, as every
    other bad answer is, not a raw ValueError."""
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(1)

    def answer():
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: ' + length +
                     b'\r\nContent-Type: application/json\r\n'
                     b'Connection: close\r\n\r\n{"snapshots": []}')
        conn.close()
        listener.close()
    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    url = 'http://127.0.0.1:%d' % listener.getsockname()[1]
    try:
        with pytest.raises(RemoteError, match='bad Content-Length'):
            RemoteClient(url, 't', retries=0,
                         timeout=(5, 5)).list_snapshots()
    finally:
        thread.join(5)


def _without(answer, *path):
    """``answer`` (JSON-ready) with the key at ``path`` gone."""
    answer = json.loads(json.dumps(answer))
    inner = answer
    for key in path[:-1]:
        inner = inner[key]
    del inner[path[-1]]
    return answer


def _with(answer, value, *path):
    answer = json.loads(json.dumps(answer))
    inner = answer
    for key in path[:-1]:
        inner = inner[key]
    inner[path[-1]] = value
    return answer


PAGE = {'snapshots': [startup.SNAPSHOT], 'next': None}


@pytest.mark.parametrize('command, path, answer, where', [
    (['list'], '/lovely.gae/snapshots', [], 'the answer is [], not an '
     'object'),
    (['list'], '/lovely.gae/snapshots', _without(PAGE, 'snapshots'),
     '["snapshots"] is missing'),
    (['list'], '/lovely.gae/snapshots',
     _with(PAGE, '25', 'snapshots', 0, 'progress', 'entities'),
     '["snapshots"][0]["progress"]["entities"] is "25", not an integer'),
    (['status', '7'], '/lovely.gae/snapshots/7',
     _without(startup.SNAPSHOT, 'progress', 'by_kind'),
     '["progress"]["by_kind"] is missing'),
    (['status', '7'], '/lovely.gae/snapshots/7',
     _with(startup.SNAPSHOT, True, 'id'), '["id"] is true, not an integer'),
    (['worker'], '/lovely.gae/worker', {'ran': 1},
     '["queued"] is missing'),
    (['worker'], '/lovely.gae/worker', {'ran': 0, 'queued': 0,
                                        'next': 'soon'},
     '["next"] is "soon", not an object'),
])
def test_an_answer_of_another_shape_is_one_line_naming_where(
        hostile, capsys, command, path, answer, where):
    """An app of another version, another service at the URL, a hostile
    one: an answer of another shape than the app's is refused as it
    comes, in one line that says where it is off; it was a KeyError or
    TypeError traceback in whatever read it."""
    method = 'POST' if command == ['worker'] else 'GET'
    hostile.serve(path, json.dumps(answer).encode(),
                  headers=[('Content-Type', 'application/json')])
    assert cli.main(['--url', hostile.url, '--token', 's3cret']
                    + command) == 1
    assert capsys.readouterr().err == (
        "lovely-gae: error: %s %s%s answered JSON of another shape than a "
        "lovely_gae app's: %s\n" % (method, hostile.url, path, where))
