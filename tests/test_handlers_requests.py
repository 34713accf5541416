"""What every request is held to, whatever its endpoint: the methods a
route serves, a path in UTF-8, ids and numbers within range, and a body of
known length within the limit (refused unread)."""
import pytest
from webob import Request
from webtest import TestApp

from lovely_gae import defaults
from lovely_gae.snapshot import getApp
from lovely_gae.snapshot.transfer import wire
from lovely_gae.snapshot.app.handlers import HANDLER_TUPLES
from lovely_gae.snapshot.models import Snapshot
from tests.conftest import CREATE, SNAPSHOTS, Dummy, Unread


def test_other_methods_and_paths_are_refused(app):
    res = app.put(CREATE, status=405)
    assert res.headers['Allow'] == 'GET, POST'
    assert app.get('/lovely.gae/nothing', status=404).text.startswith(
        'no such page')
    assert Snapshot.all().count() == 0


def test_every_route_refuses_the_methods_it_does_not_serve(app,
                                                           finished_snapshot):
    snap = finished_snapshot(['Dummy'])
    [rb] = snap.range_backups()
    for path, handler in HANDLER_TUPLES:
        url = (path.replace('<id>', str(snap.id))
               .replace('<name:path>', rb.name))
        for method in ('PUT', 'DELETE', 'PATCH', 'GET', 'POST', 'HEAD'):
            if method not in handler.methods:
                res = app.request(url, method=method, status=405)
                assert set(res.headers['Allow'].split(', ')) == \
                    handler.methods
    assert Snapshot.all().count() == 1


@pytest.mark.parametrize('method, path, reason', [
    ('GET', SNAPSHOTS + '/9223372036854775808', 'invalid snapshot id'),
    ('GET', SNAPSHOTS + '/%d' % 2 ** 64, 'invalid snapshot id'),
    ('GET', SNAPSHOTS + '/%d/manifest' % 2 ** 64, 'invalid snapshot id'),
    ('GET', SNAPSHOTS + '/%d/ranges/RB:1:x' % 2 ** 64, 'invalid snapshot id'),
    ('POST', SNAPSHOTS + '/%d/restore' % 2 ** 64, 'invalid snapshot id'),
    ('POST', SNAPSHOTS + '/%d/delete' % 2 ** 64, 'invalid snapshot id'),
    ('GET', SNAPSHOTS + '/0', 'invalid snapshot id'),
    ('GET', SNAPSHOTS + '/1_0', 'invalid snapshot id'),
    ('GET', SNAPSHOTS + '/%20%31', 'invalid snapshot id'),
    ('GET', SNAPSHOTS + '/%D9%A1', 'invalid snapshot id'),
    ('GET', SNAPSHOTS + '/' + '1' * 5000, 'invalid snapshot id'),
    ('GET', SNAPSHOTS + '?limit=1001', 'invalid limit'),
    ('GET', SNAPSHOTS + '?limit=%d' % 2 ** 31, 'invalid limit'),
    ('GET', SNAPSHOTS + '?limit=%d' % 2 ** 64, 'invalid limit'),
    ('GET', SNAPSHOTS + '?limit=1_0', 'invalid limit'),
    ('POST', '/lovely.gae/prune?keep=%d' % 2 ** 63, 'invalid keep'),
    ('POST', '/lovely.gae/prune?keep=%D9%A1', 'invalid keep'),
    ('POST', '/lovely.gae/prune?keep=1&only=0', 'invalid only'),
    ('POST', '/lovely.gae/prune?keep=1&only=%d' % 2 ** 64, 'invalid only'),
    ('POST', '/lovely.gae/prune?keep=1&only=1&only=x', 'invalid only'),
    ('GET', SNAPSHOTS + '/%d/restores/%s' % (2 ** 64, 'f' * 32),
     'invalid snapshot id'),
    ('GET', SNAPSHOTS + '/latest/restores/%s' % ('f' * 32),
     'invalid snapshot id'),
    ('GET', SNAPSHOTS + '/1/restores/' + 'F' * 32, 'invalid restore id'),
    ('GET', SNAPSHOTS + '/1/restores/' + 'f' * 5000, 'invalid restore id'),
    ('POST', SNAPSHOTS + '?batchsize=%d' % 2 ** 64, 'invalid batchsize'),
    ('POST', SNAPSHOTS + '?batchsize=' + '1' * 5000, 'invalid batchsize'),
    ('POST', SNAPSHOTS + '?batchsize=%D9%A1', 'invalid batchsize'),
    ('POST', SNAPSHOTS + '?batchsize=%201', 'invalid batchsize'),
    ('POST', '/lovely.gae/worker?seconds=1_0', 'invalid seconds'),
    ('POST', '/lovely.gae/worker?seconds=%D9%A1', 'invalid seconds'),
])
def test_ids_and_numbers_out_of_range_are_400(app, make_entities, method,
                                              path, reason):
    make_entities(Dummy, 1)
    res = app.request(path, method=method, status=400)
    assert res.text.startswith(reason)
    assert res.text.count('\n') == 1
    assert Snapshot.all().count() == 0


@pytest.mark.parametrize('path, content_type, length', [
    (CREATE, 'application/x-www-form-urlencoded', 64 * 1024 + 1),
    (SNAPSHOTS, 'multipart/form-data; boundary=x', 64 * 1024 + 1),
    ('/lovely.gae/worker', 'application/octet-stream', 64 * 1024 + 1),
    ('/lovely.gae/upload', wire.CONTENT_TYPE, defaults.MAX_REQUEST_BYTES + 1),
])
def test_a_body_over_the_limit_is_refused_unread(gae_testbed, path,
                                                 content_type, length):
    request = Request.blank(path, method='POST', environ={
        'wsgi.input': Unread(), 'CONTENT_LENGTH': str(length),
        'CONTENT_TYPE': content_type})
    res = request.get_response(getApp())
    assert res.status_int == 413
    assert res.text == 'send at most %d bytes in this request\n' % (
        length - 1)
    assert Snapshot.all().count() == 0


def test_a_form_within_the_limit_is_read(app, make_entities):
    make_entities(Dummy, 1)
    body = 'kinds=Dummy&padding=' + 'x' * (64 * 1024 - 20)
    assert len(body) == 64 * 1024
    assert app.post(CREATE, body, content_type=(
        'application/x-www-form-urlencoded')).status_int == 200


def test_a_body_of_unknown_length_is_refused_unread(gae_testbed):
    request = Request.blank(CREATE, method='POST', environ={
        'wsgi.input': Unread(), 'HTTP_TRANSFER_ENCODING': 'chunked',
        'wsgi.input_terminated': True,
        'CONTENT_TYPE': 'application/x-www-form-urlencoded'})
    res = request.get_response(getApp())
    assert res.status_int == 411
    assert res.text == 'Content-Length is required\n'
    assert Snapshot.all().count() == 0


@pytest.mark.parametrize('path', [
    '/lovely.gae/%FF', SNAPSHOTS + '/1/ranges/RB:1:%FF%FE',
    SNAPSHOTS + '/1/ranges/RB%3A1%3A%ED%A0%80', SNAPSHOTS + '/%C0%AF'])
def test_a_path_that_is_not_utf8_is_400(gae_testbed, path):
    token = {'Authorization': 'Bearer s3cret'}
    for app, headers in ((TestApp(getApp()), {}),
                         (TestApp(getApp(token='s3cret')), token)):
        res = app.get(path, headers=headers, status=400)
        assert res.text.startswith('the path is not UTF-8: /lovely.gae/')
        assert res.text.count('\n') == 1
    # A caller without the token learns nothing of it.
    res = TestApp(getApp(token='s3cret')).get(path, status=401)
    assert res.text == 'a bearer token is required\n'
