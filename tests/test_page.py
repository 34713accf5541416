"""The HTML page: who gets it, what a cross-site request does, escaping."""
import re
import time

import pytest
from google.appengine.ext import db
from webtest import TestApp

from lovely_gae import async_, defaults
from lovely_gae.snapshot import api, getApp
from lovely_gae.snapshot.app import page, sessions
from lovely_gae.snapshot.models import Snapshot
from tests.conftest import Dummy, Yummy

TOKEN = 's3cret'
ROOT = '/lovely.gae/'


def state():
    """Everything a request could change, in one comparable value."""
    return ([(s.id, s.status, s.restore_id, s.plan_id)
             for s in Snapshot.all()], len(async_.get_tasks()),
            Dummy.all().count())


def csrf_of(res):
    return re.search(r'name="csrf" value="([0-9a-f]+)"', res.text).group(1)


@pytest.fixture
def app(gae_testbed, monkeypatch):
    monkeypatch.delenv('LOVELY_GAE_TOKEN', raising=False)
    return TestApp(getApp(token=TOKEN, app_engine_headers=False))


@pytest.fixture
def browser(app):
    """``app`` logged in through the form, as a browser would be."""
    res = app.post(ROOT + 'login', {'token': TOKEN})
    assert res.status_int == 303
    cookie = res.headers['Set-Cookie']
    assert 'HttpOnly' in cookie and 'samesite=strict' in cookie.lower()
    assert 'Path=/lovely.gae/' in cookie
    return app


@pytest.fixture
def finished(gae_testbed, make_entities, run_tasks):
    make_entities(Dummy, 3)
    snap = api.create_snapshot(['Dummy'])
    run_tasks(recursive=True)
    return api.get_snapshot(snap.id)


def test_anonymous_callers_get_the_login_form_alone(app, finished):
    before = state()
    res = app.get(ROOT, status=401)
    assert 'name="token"' in res.text and 'Dummy' not in res.text
    for path in ('page/%d' % finished.id, 'page/create', 'logout',
                 'page/%d/restore' % finished.id,
                 'page/%d/delete' % finished.id):
        res = app.post(ROOT + path, {'kinds': 'Dummy'}, status=401)
        assert res.text == 'a bearer token is required\n'
    app.get(ROOT + 'page/%d' % finished.id, status=401)
    res = app.post(ROOT + 'login', {'token': 'guess'}, status=403)
    assert 'wrong token' in res.text and 'Set-Cookie' not in res.headers
    assert state() == before


def test_a_forged_cookie_opens_nothing(app, finished):
    # Quoted, a cookie may spell any bytes: not UTF-8, or not ASCII.
    for value in ('nonce.' + '0' * 64, r'"nonce.\351"', r'"nonce.\303\251"',
                  '.', 'x' * 5000):
        cookie = '%s=%s' % (page.COOKIE, value)
        for path in ('', 'page/%d' % finished.id):
            res = app.get(ROOT + path, status=401, headers={'Cookie': cookie})
            assert 'Dummy' not in res.text


def test_the_cookie_opens_the_page_and_not_the_json_endpoints(browser,
                                                               finished):
    res = browser.get(ROOT)
    assert 'Dummy' in res.text and 'finished' in res.text
    browser.get('/lovely.gae/snapshots', status=401)
    browser.post('/lovely.gae/snapshots', {'kinds': 'Dummy'}, status=401)
    # Logging out ends the session in this browser.
    browser.post(ROOT + 'logout', {'csrf': csrf_of(res)}, status=303)
    browser.get(ROOT, status=401)


def test_cross_site_posts_are_refused_and_change_nothing(browser, finished):
    csrf = csrf_of(browser.get(ROOT))
    before = state()
    posts = [(ROOT + 'page/create', {'kinds': 'Dummy'}),
             (ROOT + 'page/%d/restore' % finished.id, {'dry_run': 'true'}),
             (ROOT + 'page/%d/restore' % finished.id, {}),
             (ROOT + 'page/%d/delete' % finished.id, {})]
    for path, form in posts:
        for extra, headers in [({}, {}),
                               ({'csrf': 'f' * 64}, {}),
                               ({'csrf': csrf},
                                {'Origin': 'https://evil.example'}),
                               ({'csrf': csrf},
                                {'Sec-Fetch-Site': 'cross-site'})]:
            res = browser.post(path, dict(form, **extra), headers=headers,
                               status=403)
            assert res.text.startswith('refused: ')
    # Nor may a page elsewhere log a browser in (login CSRF).
    browser.post(ROOT + 'login', {'token': TOKEN}, status=403,
                 headers={'Origin': 'https://evil.example'})
    assert state() == before


def test_a_csrf_token_is_bound_to_its_session(app, finished):
    first = csrf_of(app.post(ROOT + 'login', {'token': TOKEN}).follow())
    app.reset()
    second = csrf_of(app.post(ROOT + 'login', {'token': TOKEN}).follow())
    assert first != second
    before = state()
    app.post(ROOT + 'page/%d/delete' % finished.id, {'csrf': first},
             status=403)
    assert state() == before


def test_the_flows_create_plan_restore_delete(browser, make_entities,
                                              run_tasks):
    keys = make_entities(Dummy, 5)
    res = browser.get(ROOT)
    res = browser.post(ROOT + 'page/create',
                       {'kinds': 'Dummy\r\n', 'csrf': csrf_of(res)})
    assert res.status_int == 303
    run_tasks(recursive=True)
    res = res.follow()
    snap = Snapshot.all().get()
    snapshot_id = snap.id
    # Sizes as people read them, as the CLI shows them.
    assert ('Status: finished; namespace: (default); 5 entities, %d B stored'
            % snap.to_dict()['progress']['bytes']) in res.text
    assert '<th>stored</th>' in browser.get(ROOT).text
    db.delete(keys[:2])
    res = browser.post(ROOT + 'page/%d/restore' % snapshot_id,
                       {'dry_run': 'true', 'csrf': csrf_of(res)}).follow()
    assert 'Restore as planned' not in res.text
    run_tasks(recursive=True)
    res = browser.get(ROOT + 'page/%d' % snapshot_id)
    plan = res.text.split('<table id="plan">')[1].split('</table>')[0]
    assert '<td>Dummy</td><td>2</td><td>0</td><td>0</td>' in plan
    res = browser.post(ROOT + 'page/%d/restore' % snapshot_id,
                       {'kinds': 'Dummy', 'csrf': csrf_of(res)}).follow()
    run_tasks(recursive=True)
    assert Dummy.all().count() == 5
    res = browser.post(ROOT + 'page/%d/delete' % snapshot_id,
                       {'csrf': csrf_of(res)}).follow()
    run_tasks(recursive=True)
    assert Snapshot.all().count() == 0


def test_a_restore_shows_a_bar_per_kind(browser, make_entities, run_tasks):
    make_entities(Dummy, 30)
    make_entities(Yummy, 10)
    snap = api.create_snapshot(['Dummy', 'Yummy'], batchsize=10)
    run_tasks(recursive=True)
    api.get_snapshot(snap.id).restore()
    while not api.get_snapshot(snap.id).restore_progress()['ranges_done']:
        assert run_tasks(max_tasks=1) == 1
    done = api.get_snapshot(snap.id).restore_progress()['by_kind']
    res = browser.get(ROOT + 'page/%d' % snap.id)
    table = res.text.split('<table id="restore-kinds">')[1].split(
        '</table>')[0]
    for kind, total in (('Dummy', 3), ('Yummy', 1)):
        ranges = done[kind]['ranges_done']
        assert ('<td>%s</td><td><progress value="%d" max="%d"></progress> '
                '%d/%d</td>' % (kind, ranges, total, ranges, total)) in table
    assert 'http-equiv="refresh"' in res.text  # it watches the restore
    run_tasks(recursive=True)
    res = browser.get(ROOT + 'page/%d' % snap.id)
    assert '<progress value="3" max="3"></progress> 3/3' in res.text.split(
        '<table id="restore-kinds">')[1]


def test_a_refusal_of_the_json_logic_is_shown_on_the_page(browser):
    res = browser.get(ROOT)
    res = browser.post(ROOT + 'page/create',
                       {'kinds': 'Dummy', 'batchsize': 'x',
                        'csrf': csrf_of(res)}, status=400)
    assert ('<p class="error">invalid batchsize &#x27;x&#x27;: must be an '
            'integer from 1 to 100000</p>') in res.text
    assert Snapshot.all().count() == 0


def test_a_misspelt_kind_is_refused_and_creates_nothing(browser,
                                                      make_entities):
    make_entities(Dummy, 3)
    res = browser.get(ROOT)
    res = browser.post(ROOT + 'page/create',
                       {'kinds': 'Dumy', 'csrf': csrf_of(res)}, status=400)
    assert "kind &#x27;Dumy&#x27; has no entities" in res.text
    assert Snapshot.all().count() == 0


def test_hostile_kind_names_are_escaped(browser, run_tasks):
    kind = '<script>alert(1)</script>"\'&'
    model = type('Hostile', (db.Expando,), {'kind': classmethod(
        lambda cls: kind)})
    db.put(model())
    snap = api.create_snapshot([kind])
    res = browser.get(ROOT)
    detail = browser.get(ROOT + 'page/%d' % snap.id)
    run_tasks(recursive=True)
    finished = browser.get(ROOT + 'page/%d' % snap.id)
    for res in (res, detail, finished):
        assert '<script>' not in res.text
        assert '&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#x27;&amp;' \
            in res.text
        assert 'default-src' in res.headers['Content-Security-Policy']


def test_the_cookie_is_secure_when_the_page_came_over_https(app):
    for extra in ({'wsgi.url_scheme': 'https'},
                  {'HTTP_X_FORWARDED_PROTO': 'https'}):
        res = app.post(ROOT + 'login', {'token': TOKEN}, extra_environ=extra)
        assert 'secure' in res.headers['Set-Cookie'].lower()
    res = app.post(ROOT + 'login', {'token': TOKEN})
    assert 'secure' not in res.headers['Set-Cookie'].lower()


def test_a_session_cookie_is_dead_after_logout(gae_testbed, monkeypatch):
    """A copy of the cookie taken before logout (a shared machine, a proxy
    log) opens nothing after it."""
    monkeypatch.delenv('LOVELY_GAE_TOKEN', raising=False)
    app = TestApp(getApp(token=TOKEN, app_engine_headers=False))
    res = app.post(ROOT + 'login', {'token': TOKEN})
    stolen = app.cookies[page.COOKIE]
    res = app.get(ROOT)
    app.post(ROOT + 'logout', {'csrf': csrf_of(res)}, status=303)
    assert page.COOKIE not in app.cookies
    thief = TestApp(getApp(token=TOKEN, app_engine_headers=False))
    thief.set_cookie(page.COOKIE, stolen)
    res = thief.get(ROOT, expect_errors=True)
    assert res.status_int == 401, 'a logged-out cookie still opens the page'


def test_a_session_cookie_expires(gae_testbed, monkeypatch):
    """The browser drops the cookie after ``SESSION_SECONDS``, and the app
    refuses one that is older, or whose time was changed."""
    monkeypatch.delenv('LOVELY_GAE_TOKEN', raising=False)
    app = TestApp(getApp(token=TOKEN, app_engine_headers=False))
    res = app.post(ROOT + 'login', {'token': TOKEN})
    cookie = res.headers['Set-Cookie']
    assert 'Max-Age=%d' % defaults.SESSION_SECONDS in cookie, cookie
    key = TOKEN.encode()
    now = time.time()
    fresh = sessions.start(key, now - defaults.SESSION_SECONDS + 60)
    old = sessions.start(key, now - defaults.SESSION_SECONDS - 1)
    nonce, issued, signature = old.split('.')
    moved = '%s.%d.%s' % (nonce, now, signature)
    for cookie, status in ((fresh, 200), (old, 401), (moved, 401)):
        visitor = TestApp(getApp(token=TOKEN, app_engine_headers=False))
        visitor.set_cookie(page.COOKIE, cookie)
        assert visitor.get(ROOT, expect_errors=True).status_int == status


def test_login_works_behind_a_front_end_that_ends_tls(gae_testbed,
                                                     monkeypatch):
    """Behind App Engine's front end (or any proxy that ends TLS) the app
    sees plain HTTP and ``X-Forwarded-Proto: https``, while the browser
    sends ``Origin: https://host``: that origin is the page's own. Another
    host's is still refused."""
    monkeypatch.delenv('LOVELY_GAE_TOKEN', raising=False)
    app = TestApp(getApp(token=TOKEN, app_engine_headers=False))
    res = app.post(ROOT + 'login', {'token': TOKEN}, expect_errors=True,
                   headers={'Host': 'myapp.appspot.com',
                            'X-Forwarded-Proto': 'https',
                            'Origin': 'https://myapp.appspot.com',
                            'Sec-Fetch-Site': 'same-origin'})
    assert res.status_int == 303, res.text
    res = app.post(ROOT + 'login', {'token': TOKEN}, expect_errors=True,
                   headers={'Host': 'myapp.appspot.com',
                            'X-Forwarded-Proto': 'https',
                            'Origin': 'https://evil.example'})
    assert res.status_int == 403
