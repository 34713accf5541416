"""Who may call the app, on App Engine and off; refusals change nothing."""
import hmac

import pytest
from webob import Request
from webtest import TestApp

from lovely_gae import async_, defaults
from lovely_gae.snapshot.app import access
from lovely_gae.snapshot import getApp
from lovely_gae.snapshot.transfer import wire
from lovely_gae.snapshot.models import Snapshot
from tests.conftest import Dummy, Unread

CREATE = '/lovely.gae/snapshot.CreateSnapshotHandler'


@pytest.fixture
def on_app_engine(monkeypatch):
    monkeypatch.setenv('GAE_ENV', 'standard')


def state():
    """Everything a request could change, in one comparable value."""
    return ([(s.id, s.status, s.restore_id) for s in Snapshot.all()],
            len(async_.get_tasks()), Dummy.all().count())


def writes(snapshot_id):
    """A request to every endpoint that writes."""
    return [('POST', CREATE, {}), ('GET', CREATE, {}),
            ('POST', '/lovely.gae/snapshots', {}),
            ('POST', '/lovely.gae/snapshots/%d/restore' % snapshot_id, {}),
            ('POST', '/lovely.gae/snapshots/%d/delete' % snapshot_id, {}),
            ('POST', '/lovely.gae/prune?keep=0', {}),
            ('GET', '/lovely.gae/prune?keep=0', {}),
            ('GET', '/lovely.gae/worker', {}),
            ('POST', '/lovely.gae/upload', {'content_type':
                                            wire.CONTENT_TYPE})]


@pytest.fixture
def world(make_entities, finished_snapshot, run_tasks):
    """A finished snapshot, a later change, and a task waiting to run."""
    make_entities(Dummy, 3)
    snap = finished_snapshot(['Dummy'])
    make_entities(Dummy, 2)
    async_.defer(print, args=('due',))
    return snap


def call(app, method, path, status, **kwargs):
    return app.request(path, method=method, expect_errors=True,
                       **kwargs).status_int == status or pytest.fail(
        '%s %s did not get %d' % (method, path, status))


def test_off_app_engine_without_a_token_in_process_callers_get_in(gae_testbed):
    assert TestApp(getApp()).get(CREATE).status_int == 200


@pytest.mark.parametrize('environ, headers', [
    ({'REMOTE_ADDR': '10.1.2.3'}, {}),
    ({'REMOTE_ADDR': '127.0.0.1'}, {'X-Forwarded-For': '203.0.113.9'}),
    ({'REMOTE_ADDR': '127.0.0.1'}, {'Forwarded': 'for=203.0.113.9'}),
    ({'REMOTE_ADDR': '127.0.0.1'}, {'X-Real-IP': '203.0.113.9'}),
    # DNS rebinding: a name of the attacker's that resolves to 127.0.0.1
    ({'REMOTE_ADDR': '127.0.0.1'}, {'Host': 'evil.example:8080'}),
    # A page of another site posting a form to this machine
    ({'REMOTE_ADDR': '127.0.0.1'}, {'Origin': 'https://evil.example'}),
    ({'REMOTE_ADDR': '127.0.0.1'}, {'Sec-Fetch-Site': 'cross-site'}),
    ({'REMOTE_ADDR': '::1'}, {'Sec-Fetch-Site': 'same-site'}),
])
def test_off_app_engine_without_a_token_others_are_refused(
        world, environ, headers):
    app = TestApp(getApp(), extra_environ=environ)
    before = state()
    for method, path, kwargs in writes(world.id):
        res = app.request(path, method=method, headers=headers,
                          expect_errors=True, **kwargs)
        assert res.status_int == 403
        assert res.text == ('no token configured: only loopback callers '
                            'are served\n')
    assert state() == before


@pytest.mark.parametrize('environ, headers', [
    ({'REMOTE_ADDR': '127.0.0.1'}, {'Host': '127.0.0.1:8080'}),
    ({'REMOTE_ADDR': '::1'}, {'Host': '[::1]:8080'}),
    ({'REMOTE_ADDR': '127.0.0.1'}, {'Host': 'localhost:8080',
                                    'Origin': 'http://localhost:8080'}),
    ({'REMOTE_ADDR': '127.0.0.1'}, {'Sec-Fetch-Site': 'none'}),
])
def test_off_app_engine_without_a_token_loopback_callers_get_in(
        gae_testbed, environ, headers):
    app = TestApp(getApp(), extra_environ=environ)
    assert app.post(CREATE, headers=headers).status_int == 200
    assert app.get('/lovely.gae/snapshots', headers=headers).status_int == 200


def test_without_a_token_a_get_that_writes_must_come_in_process(world):
    """Any web page can make a browser send a GET; in-process is no page."""
    over_http = TestApp(getApp(), extra_environ={'REMOTE_ADDR': '127.0.0.1'})
    before = state()
    for path in (CREATE, '/lovely.gae/worker'):
        res = over_http.get(path, status=403)
        assert res.text == ('without a token, a GET that writes is refused '
                            'over HTTP: use POST or a token\n')
    assert state() == before
    assert over_http.get('/lovely.gae/snapshots').status_int == 200
    # The seed's in-process calls, and a caller with the token, may GET.
    assert TestApp(getApp()).get(CREATE).status_int == 200
    with_token = TestApp(getApp(token='s3cret'),
                         extra_environ={'REMOTE_ADDR': '127.0.0.1'})
    assert with_token.get(CREATE, headers={
        'Authorization': 'Bearer s3cret'}).status_int == 200
    assert Snapshot.all().count() == 3


def test_head_never_writes(world):
    before = state()
    for app, headers in [(TestApp(getApp()), {}),
                         (TestApp(getApp(token='s3cret')),
                          {'Authorization': 'Bearer s3cret'})]:
        for method, path, kwargs in writes(world.id):
            app.request(path, method='HEAD', headers=headers,
                        expect_errors=True)
        for path in (CREATE, '/lovely.gae/worker'):
            res = app.request(path, method='HEAD', headers=headers,
                              expect_errors=True)
            assert res.status_int == 405
            assert res.headers['Allow'] == 'GET, POST'
    assert state() == before


def test_a_refused_callers_body_is_never_read(world):
    app = getApp(token='s3cret')
    for method, path, kwargs in writes(world.id):
        request = Request.blank(path, method=method, environ={
            'wsgi.input': Unread(), 'CONTENT_LENGTH': '11',
            'CONTENT_TYPE': kwargs.get('content_type',
                                       'application/x-www-form-urlencoded')})
        assert request.get_response(app).status_int == 401


def test_with_a_token_every_caller_needs_it(world):
    app = TestApp(getApp(token='s3cret'))
    before = state()
    for method, path, kwargs in writes(world.id):
        call(app, method, path, 401, **kwargs)
        call(app, method, path, 403, headers={
            'Authorization': 'Bearer s3cre'}, **kwargs)
        call(app, method, path, 401, headers={
            'Authorization': 'Basic s3cret'}, **kwargs)
    res = app.get(CREATE, expect_errors=True)
    assert res.headers['WWW-Authenticate'] == 'Bearer'
    assert res.text == 'a bearer token is required\n'
    # Cron's header means nothing off App Engine: anyone can send it.
    call(app, 'GET', CREATE, 401, headers={'X-Appengine-Cron': 'true'})
    assert state() == before
    call(app, 'GET', CREATE, 200, headers={'Authorization': 'Bearer s3cret'})


def test_every_read_needs_the_token_too(world):
    """What a snapshot holds, and how its restores go, is for the token's
    holders alone; a refusal says nothing of whether the thing exists."""
    world.restore()  # names the restore started on ``world``
    [rb] = world.range_backups()
    base = '/lovely.gae/snapshots'
    reads = [base, '%s/%d' % (base, world.id), base + '/latest',
             '%s/%d/restores/%s' % (base, world.id, world.restore_id),
             '%s/%d/restores/%s' % (base, world.id, 'f' * 32),
             '%s/%d/manifest' % (base, world.id),
             '%s/%d/ranges/%s' % (base, world.id, rb.name)]
    app = TestApp(getApp(token='s3cret'))
    for path in reads:
        assert app.get(path, status=401).text == (
            'a bearer token is required\n')
        call(app, 'GET', path, 403, headers={'Authorization': 'Bearer s3cre'})
    call(app, 'GET', reads[3], 200, headers={'Authorization': 'Bearer s3cret'})


def test_the_token_may_come_from_the_environment(gae_testbed, monkeypatch):
    monkeypatch.setenv(defaults.TOKEN_ENV, 'from-env')
    app = TestApp(getApp())
    call(app, 'GET', '/lovely.gae/snapshots', 401)
    call(app, 'GET', '/lovely.gae/snapshots', 200,
         headers={'Authorization': 'Bearer from-env'})


def test_tokens_are_compared_in_constant_time(gae_testbed, monkeypatch):
    seen = []
    real = hmac.compare_digest

    def compare(a, b):
        seen.append((a, b))
        return real(a, b)
    monkeypatch.setattr(access.hmac, 'compare_digest', compare)
    app = TestApp(getApp(token='s3cret'))
    call(app, 'GET', '/lovely.gae/snapshots', 403,
         headers={'Authorization': 'Bearer guess'})
    assert seen == [(b'guess', b's3cret')]


def test_on_app_engine_cron_and_queues_get_in(gae_testbed, on_app_engine):
    app = TestApp(getApp(token='s3cret'))
    call(app, 'GET', CREATE, 200, headers={'X-Appengine-Cron': 'true'})
    call(app, 'GET', '/lovely.gae/prune?keep=1', 200,  # cron sends GET
         headers={'X-Appengine-Cron': 'true'})
    assert Snapshot.all().count() == 1
    call(app, 'POST', '/lovely.gae/worker', 200,
         headers={'X-AppEngine-QueueName': 'default'})
    call(app, 'GET', '/lovely.gae/snapshots', 200,
         headers={'Authorization': 'Bearer s3cret'})


def test_on_app_engine_everyone_else_is_refused(world, on_app_engine):
    before = state()
    for token in (None, 's3cret'):
        # Loopback is no way in on App Engine: its front end is a proxy.
        app = TestApp(getApp(token=token),
                      extra_environ={'REMOTE_ADDR': '127.0.0.1'})
        for method, path, kwargs in writes(world.id):
            call(app, method, path, 401, **kwargs)
            call(app, method, path, 403, headers={
                'Authorization': 'Bearer wrong'}, **kwargs)
            call(app, method, path, 401,
                 headers={'X-Appengine-Cron': 'yes'}, **kwargs)
    assert state() == before



@pytest.mark.parametrize('value', ['1', 'true', 'yes', 'on', 'typo'])
def test_token_only_mode_may_be_set_in_the_environment(
        world, on_app_engine, monkeypatch, value):
    app = TestApp(getApp(token='s3cret'))
    call(app, 'POST', '/lovely.gae/worker', 200,
         headers={'X-AppEngine-QueueName': 'default'})
    monkeypatch.setenv(defaults.TOKEN_ONLY_ENV, value)
    before = state()
    for method, path, kwargs in writes(world.id):
        call(app, method, path, 401, headers={'X-Appengine-Cron': 'true'},
             **kwargs)
        call(app, method, path, 401,
             headers={'X-AppEngine-QueueName': 'default'}, **kwargs)
    assert state() == before
    monkeypatch.setenv(defaults.TOKEN_ONLY_ENV, '0')
    call(app, 'GET', '/lovely.gae/worker', 200,
         headers={'X-Appengine-Cron': 'true'})


def test_on_app_engine_nobody_is_a_loopback_caller(world, on_app_engine):
    """App Engine's front end is a proxy: "local" means nothing there."""
    before = state()
    app = TestApp(getApp(app_engine_headers=False),
                  extra_environ={'REMOTE_ADDR': '127.0.0.1'})
    for method, path, kwargs in writes(world.id):
        call(app, method, path, 401, **kwargs)
    call(TestApp(getApp(app_engine_headers=False)), 'GET', CREATE, 401)
    assert state() == before


def test_token_only_mode_trusts_no_app_engine_header(world, on_app_engine):
    """Headers a server maps from ``X-AppEngine_QueueName`` can be spoofed."""
    before = state()
    app = TestApp(getApp(token='s3cret', app_engine_headers=False))
    for method, path, kwargs in writes(world.id):
        call(app, method, path, 401, headers={'X-Appengine-Cron': 'true'},
             **kwargs)
        call(app, method, path, 401,
             headers={'X-AppEngine-QueueName': 'default'}, **kwargs)
    assert state() == before
    call(app, 'GET', '/lovely.gae/snapshots', 200,
         headers={'Authorization': 'Bearer s3cret'})
