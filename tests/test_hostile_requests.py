"""Hostile queries and forms (not UTF-8, an unknown charset, a broken
multipart body, a file where a value is expected) are a one-line 400 at
most, never a 500, before anything is written; for the login form too,
which anybody may post to."""
import pytest
from webob import Request

from lovely_gae.snapshot import getApp
from lovely_gae.snapshot.models import Snapshot
from tests.conftest import Dummy

SNAPSHOTS = '/lovely.gae/snapshots'
PRUNE = '/lovely.gae/prune'
CREATE = '/lovely.gae/snapshot.CreateSnapshotHandler'


def _call(method, path, body=b'', content_type=None, query=None, **environ):
    env = {'REQUEST_METHOD': method}
    if content_type:
        env['CONTENT_TYPE'] = content_type
    env.update(environ)
    request = Request.blank(path, environ=env, POST=None)
    if query is not None:
        request.environ['QUERY_STRING'] = query
    if body or method == 'POST':
        request.body = body
    return _checked(request.get_response(getApp()))


def _checked(res):
    """``res``, a 400 at most: if refused, in one line."""
    assert res.status_int < 500, res.text[:300]
    if res.status_int == 400:
        assert res.text.strip() and '\n' not in res.text.strip(), res.text
    return res


NON_UTF8 = [
    ('GET', SNAPSHOTS, 'limit=%FF'),
    ('GET', SNAPSHOTS, 'x=%FF'),
    ('GET', SNAPSHOTS, 'after=%FF'),
    ('GET', SNAPSHOTS + '/1/restores/' + 'f' * 32, 'x=%FF'),
    ('POST', PRUNE, 'keep=%FF'),
    ('POST', PRUNE, 'keep=1&only=%FF'),
    ('POST', PRUNE, 'keep=1&x=%FF'),
    ('POST', SNAPSHOTS, 'kinds=%FF'),
    ('POST', CREATE, 'kinds=%FF'),
    ('POST', '/lovely.gae/worker', 'seconds=%FF'),
    ('GET', SNAPSHOTS + '/1/manifest', 'x=%FF'),
]


@pytest.mark.parametrize('method, path, query', NON_UTF8)
def test_a_query_that_is_not_utf8_is_not_a_500(gae_testbed, make_entities,
                                               method, path, query):
    make_entities(Dummy, 1)
    _call(method, path, query=query)
    assert Snapshot.all().count() == 0


@pytest.mark.parametrize('method, path', [
    ('POST', PRUNE), ('POST', SNAPSHOTS), ('POST', CREATE),
    ('POST', '/lovely.gae/worker')])
@pytest.mark.parametrize('body', [b'keep=%FF', b'kinds=%FF&keep=1',
                                  b'only=%FF&keep=1', b'keep=1&\xff=1',
                                  b'keep=\xff'])
def test_a_form_that_is_not_utf8_is_not_a_500(gae_testbed, make_entities,
                                              method, path, body):
    make_entities(Dummy, 1)
    _call(method, path, body,
          content_type='application/x-www-form-urlencoded')
    assert Snapshot.all().count() == 0


@pytest.mark.parametrize('content_type, body', [
    ('application/x-www-form-urlencoded; charset=bogus', b'keep=1'),
    ('application/x-www-form-urlencoded; charset=utf-16', b'keep=1'),
    ('multipart/form-data', b'keep=1'),
    ('multipart/form-data; boundary=', b'--\r\n'),
    ('multipart/form-data; boundary=x', b'garbage'),
    ('multipart/form-data; boundary=x',
     b'--x\r\nContent-Disposition: form-data; name="keep"\r\n\r\n1\r\n--x'),
    ('multipart/form-data; boundary=x',
     b'--x\r\nContent-Disposition: form-data; name="keep"; filename="a"'
     b'\r\n\r\n1\r\n--x--\r\n'),
    ('multipart/form-data; boundary=x',
     b'--x\r\nContent-Disposition: form-data; name="\xff"\r\n\r\n\xff\r\n'
     b'--x--\r\n'),
    ('multipart/form-data; boundary=x; charset=bogus',
     b'--x\r\nContent-Disposition: form-data; name="keep"\r\n\r\n1\r\n'
     b'--x--\r\n'),
    ('application/json', b'{"keep": 1}'),
    ('text/plain', b'keep=1'),
])
@pytest.mark.parametrize('path', [PRUNE, SNAPSHOTS, CREATE,
                                  '/lovely.gae/worker'])
def test_hostile_forms_are_not_a_500(gae_testbed, make_entities,
                                     content_type, body, path):
    make_entities(Dummy, 1)
    _call('POST', path, body, content_type=content_type)


def _file_field(name):
    return (b'--x\r\nContent-Disposition: form-data; name="%s"; '
            b'filename="a"\r\n\r\n1\r\n--x--\r\n' % name.encode())


@pytest.mark.parametrize('path, name', [
    (PRUNE + '?keep=1', 'only'), (PRUNE, 'keep'),
    (SNAPSHOTS, 'batchsize'), (SNAPSHOTS, 'kinds'), (SNAPSHOTS, 'namespace'),
    (SNAPSHOTS, 'allow_empty'), ('/lovely.gae/worker', 'seconds'),
    ('/lovely.gae/worker', 'task'),
    ('/lovely.gae/snapshots/1/restore', 'kinds')])
def test_a_file_where_a_field_is_expected_is_not_a_500(
        gae_testbed, make_entities, path, name):
    make_entities(Dummy, 1)
    _call('POST', path.split('?')[0], _file_field(name),
          content_type='multipart/form-data; boundary=x',
          query=path.partition('?')[2])
    assert Snapshot.all().count() == 0


@pytest.mark.parametrize('content_type, body, query', [
    ('application/x-www-form-urlencoded; charset=bogus', b'token=x', ''),
    ('multipart/form-data', b'token=x', ''),
    ('multipart/form-data; boundary=x', _file_field('token'), ''),
    ('application/x-www-form-urlencoded', b'token=x', 'x=%FF'),
])
def test_the_login_form_takes_no_500_from_anybody(gae_testbed, content_type,
                                                   body, query):
    """Anybody may post to the login form: it must not crash."""
    request = Request.blank('/lovely.gae/login', environ={
        'REQUEST_METHOD': 'POST', 'CONTENT_TYPE': content_type,
        'QUERY_STRING': query}, POST=None)
    request.body = body
    _checked(request.get_response(getApp(token='s3cret')))

