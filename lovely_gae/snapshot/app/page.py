"""The snapshot app as one HTML page: look at snapshots, start and undo them.

A browser cannot send the bearer header, so with a token configured it
logs in: ``/lovely.gae/login`` takes the token from a form and answers a
session cookie (HttpOnly, SameSite=Strict, path ``/lovely.gae/``) that
carries a random nonce and its time, signed with the token; it lasts
``defaults.SESSION_SECONDS`` and ends for good at logout (``sessions``). The cookie opens the page's
own paths only, never the JSON ones. Every form that writes carries a CSRF
token signed with the same key and bound to the session, and a write that
a browser says comes from another site (``Origin``, ``Sec-Fetch-Site``) is
refused. Without a token configured the page is served to whom
``access.check_access`` lets in, the session being this process's.
Everything shown is escaped: kinds and namespaces come from the datastore.
"""
import hmac
import html
import secrets
import types

from webob import Response, exc
from webob.multidict import MultiDict

from ... import clitext, defaults
from .. import api
from ..models import Snapshot, Status
from ..restores import RestoreStatus
from . import manage, sessions
from .access import check_access, configured_token, refuse
from .web import allow, snapshot_or_404

__all__ = ['admit', 'may_call', 'BROWSER', 'ANONYMOUS', 'ROUTES']

ROOT = '/lovely.gae/'
COOKIE = 'lovely_gae_session'
BROWSER = 'browser'       # how a request got in: the session cookie
ANONYMOUS = 'anonymous'   # not in: it may see the login form, no more

#: Snapshots the page lists, newest first.
LIST_LIMIT = 100

_KEY = 'lovely_gae.page.key'
_SESSION = 'lovely_gae.page.session'
_REFUSAL = 'lovely_gae.page.refusal'
_WAY_IN = 'lovely_gae.page.way_in'
# The key that signs sessions and CSRF tokens when no token is configured:
# a process's own, so that no page elsewhere can know it.
_PROCESS_KEY = secrets.token_bytes(32)
# While a snapshot or a restore is in one of these, the page refreshes.
_BUSY = frozenset(status.value for status in (
    Status.STARTED, Status.STORING, Status.DELETING,
    RestoreStatus.CHECKING, RestoreStatus.RUNNING))


def _session(request, key):
    """The nonce of a good session cookie (``sessions.check``), else None."""
    try:
        value = request.cookies.get(COOKIE, '')
    except UnicodeDecodeError:  # a quoted cookie may spell any bytes
        return None
    return sessions.check(key, value)


def admit(request, token=None, app_engine_headers=None):
    """How ``request`` got in (``check_access``, or ``BROWSER``); else raise.

    A caller without a way in is ``ANONYMOUS`` on the login form's paths,
    with a token configured: the form is all it may see.
    """
    token = configured_token(token)
    key = token.encode() if token else _PROCESS_KEY
    request.environ[_KEY] = key
    request.environ[_SESSION] = _session(request, key) or ''
    try:
        way_in = check_access(request, token, app_engine_headers)
    except exc.HTTPException as refusal:
        if token is None:
            raise
        request.environ[_REFUSAL] = refusal
        if request.environ[_SESSION]:
            way_in = BROWSER
        elif request.environ.get('PATH_INFO') in (ROOT, ROOT + 'login'):
            way_in = ANONYMOUS
        else:
            raise
    request.environ[_WAY_IN] = way_in
    return way_in


def may_call(request, way_in, handler):
    """Raise the access check's refusal if ``way_in`` may not call ``handler``.

    The cookie opens the page's paths alone; an anonymous caller gets the
    login form alone.
    """
    allowed = {BROWSER: getattr(handler, 'for_browsers', False),
               ANONYMOUS: getattr(handler, 'for_anonymous', False)}
    if not allowed.get(way_in, True):
        raise request.environ[_REFUSAL]


def _page(allow_methods, anonymous=False):
    def decorate(handler):
        checked = allow(*allow_methods)(handler)
        checked.for_browsers = True
        checked.for_anonymous = anonymous
        return checked
    return decorate


def _csrf(request):
    return sessions.sign(request.environ[_KEY], b'csrf',
                         request.environ[_SESSION])


def _check_same_site(request):
    if request.headers.get('Sec-Fetch-Site') in ('cross-site', 'same-site'):
        raise refuse(exc.HTTPForbidden, 'refused: sent from another site')
    origin = request.headers.get('Origin')
    if origin is not None and origin not in _own_origins(request):
        raise refuse(exc.HTTPForbidden, 'refused: sent from another origin')


def _own_origins(request):
    """This page's origin; behind a front end that ends TLS (App Engine's,
    a proxy) the browser's is the ``https`` one of the same host."""
    own = {request.host_url}
    if _over_https(request):
        host = request.host
        own.add('https://' + (host[:-4] if host.endswith(':443') else host))
    return own


def _check_form(request):
    """Refuse a write from another site or without the session's CSRF token."""
    _check_same_site(request)
    given = request.POST.get('csrf', '')
    if not hmac.compare_digest(given.encode('utf-8', 'replace'),
                               _csrf(request).encode()):
        raise refuse(exc.HTTPForbidden, 'refused: the form is stale or '
                     'not from this page (CSRF token); reload the page')


def _e(value):
    return html.escape('' if value is None else str(value), quote=True)


def _html(title, body, status=200, refresh=False):
    head = '<meta http-equiv="refresh" content="2">' if refresh else ''
    out = ('<!DOCTYPE html><html><head><meta charset="utf-8">'
           '<title>%s</title>%s<style>body{font-family:sans-serif;margin:2em}'
           'table{border-collapse:collapse}td,th{border:1px solid #999;'
           'padding:.2em .5em;text-align:left}.error{color:#b00}'
           '</style></head><body><h1>%s</h1>%s</body></html>'
           % (_e(title), head, _e(title), body))
    response = Response(out, status=status, content_type='text/html',
                        charset='utf-8')
    # The page must not be framed (clickjacking) nor cached.
    response.headers['X-Frame-Options'] = 'DENY'
    response.headers['Content-Security-Policy'] = (
        "default-src 'none'; style-src 'unsafe-inline'; "
        "form-action 'self'; frame-ancestors 'none'")
    response.headers['Cache-Control'] = 'no-store'
    return response


def _form(request, action, button, fields=(), extra=''):
    hidden = ''.join('<input type="hidden" name="%s" value="%s">'
                     % (_e(name), _e(value))
                     for name, value in [('csrf', _csrf(request))]
                     + list(fields))
    return ('<form method="post" action="%s" style="display:inline">%s%s'
            '<button type="submit">%s</button></form>'
            % (_e(action), hidden, extra, _e(button)))


def _bar(done, total):
    if total is None:
        return '<progress></progress> %s' % _e(done)
    return '<progress value="%d" max="%d"></progress> %d/%d' % (
        done or 0, max(total, 1), done or 0, total)


def _login_form(message='', status=401):
    body = ('<p class="error">%s</p>' % _e(message) if message else '') + (
        '<form method="post" action="%slogin"><label>Token '
        '<input type="password" name="token" autocomplete="off"></label> '
        '<button type="submit">Log in</button></form>' % ROOT)
    response = _html('lovely_gae: log in', body, status=status)
    if status == 401:
        response.headers['WWW-Authenticate'] = 'Bearer'
    return response


def _over_https(request):
    # Behind App Engine's front end or a proxy the app may see plain HTTP;
    # a forged header here can only keep the cookie off plain HTTP.
    return (request.scheme == 'https'
            or request.headers.get('X-Forwarded-Proto') == 'https')


@_page(['POST'], anonymous=True)
def login(request):
    """Take the token from a form; answer a session cookie and the page."""
    _check_same_site(request)
    token = request.environ[_KEY]
    given = request.POST.get('token', '').encode('utf-8', 'replace')
    if request.environ[_KEY] is _PROCESS_KEY or not hmac.compare_digest(
            given, token):
        return _login_form('wrong token', status=403)
    response = exc.HTTPSeeOther(location=ROOT)
    response.set_cookie(COOKIE, sessions.start(token), path=ROOT,
                        max_age=defaults.SESSION_SECONDS, httponly=True,
                        samesite='strict', secure=_over_https(request))
    return response


@_page(['POST'])
def logout(request):
    _check_form(request)
    if request.environ[_SESSION]:  # a copy of the cookie opens nothing now
        sessions.end(request.environ[_SESSION])
    response = exc.HTTPSeeOther(location=ROOT)
    response.delete_cookie(COOKIE, path=ROOT)
    return response


def _busy(data):
    return (data['status'] in _BUSY
            or any(data[job] and data[job]['status'] in _BUSY
                   for job in ('restore', 'plan')))


def _row(data):
    progress = data['progress']
    return ('<tr><td><a href="%spage/%d">%d</a></td><td>%s</td><td>%s</td>'
            '<td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>'
            % (ROOT, data['id'], data['id'], _e(data['status']),
               _e(data['namespace'] or '(default)'),
               _e(', '.join(data['kinds'])),
               _e(progress['entities']), _e(clitext.size(progress['bytes'])),
               _bar(progress['ranges_done'], progress['ranges_total']),
               _e(data['created'])))


@_page(['GET'], anonymous=True)
def index(request):
    """The snapshots, and a form to start one (anonymous: the login form)."""
    if request.environ.get(_WAY_IN) == ANONYMOUS:
        return _login_form()
    return _index(request)


def _index(request, message='', status=200):
    snaps = Snapshot.to_dicts(api.list_snapshots(LIST_LIMIT))
    rows = ''.join(_row(data) for data in snaps)
    body = ('<p class="error">%s</p>' % _e(message) if message else '') + (
        '<table id="snapshots"><tr><th>id</th><th>status</th>'
        '<th>namespace</th><th>kinds</th><th>entities</th><th>stored</th>'
        '<th>ranges</th><th>created</th></tr>%s</table><h2>New snapshot</h2>'
        % rows) + _form(
            request, ROOT + 'page/create', 'Create snapshot', extra=(
                '<label>Kinds, one a line (none: every kind)<br><textarea '
                'name="kinds" rows="3"></textarea></label><br><label>'
                'Namespace <input name="namespace"></label> <label>Batch '
                'size <input name="batchsize"></label><br>'))
    if request.environ[_SESSION]:
        body += '<p>%s</p>' % _form(request, ROOT + 'logout', 'Log out')
    return _html('lovely_gae snapshots', body, status=status,
                 refresh=any(_busy(data) for data in snaps))


@_page(['POST'])
def create(request):
    """Start a snapshot as ``manage.create_from`` does, refusing kinds
    without entities; show it."""
    _check_form(request)
    form = request.POST
    params = MultiDict(('kinds', kind.strip()) for kind in
                       form.get('kinds', '').split('\n') if kind.strip())
    for name in ('namespace', 'batchsize'):
        if form.get(name):
            params[name] = form[name]
    params['allow_empty'] = 'false'  # a misspelt kind is refused
    try:
        snap = manage.create_from(types.SimpleNamespace(params=params))
    except exc.HTTPError as error:
        return _index(request, error.text.strip(), status=error.status_code)
    return exc.HTTPSeeOther(location='%spage/%d' % (ROOT, snap.id))


def _kind_rows(data):
    rows = ''
    for kind in data['kinds']:
        counts = data['progress']['by_kind'][kind]
        rows += '<tr><td>%s</td><td>%s</td><td>%s</td></tr>' % (
            _e(kind), _e(data['kind_entities'].get(kind)),
            _bar(counts['ranges_done'], counts['ranges_total']))
    return rows


def _job(title, job, html_id):
    """A restore's or a dry run's status, with a bar per kind until a dry
    run's plan (a table per kind of its own) takes their place."""
    if not job:
        return ''
    out = '<h2>%s</h2><p>%s: %s</p>' % (
        _e(title), _e(job['status']),
        _bar(job['ranges_done'], job['ranges_total']))
    if not job.get('plan'):
        out += ('<table id="%s"><tr><th>kind</th><th>ranges</th></tr>%s'
                '</table>' % (html_id, ''.join(
                    '<tr><td>%s</td><td>%s</td></tr>' % (
                        _e(kind), _bar(counts['ranges_done'],
                                       counts['ranges_total']))
                    for kind, counts in job['by_kind'].items())))
    if job.get('error'):
        out += '<p class="error">%s</p>' % _e(job['error'])
    return out


@_page(['GET'])
def show(request):
    """One snapshot: its kinds, its latest restore and dry run, its buttons."""
    return _show(request)


def _show(request, message='', status=200):
    snap = snapshot_or_404(request.urlvars['id'])
    data = snap.to_dict()
    here = '%spage/%d' % (ROOT, snap.id)
    body = ('<p class="error">%s</p>' % _e(message) if message else '') + (
        '<p><a href="%s">All snapshots</a></p><p id="status">Status: %s; '
        'namespace: %s; %s entities, %s stored</p>' % (
            ROOT, _e(data['status']), _e(data['namespace'] or '(default)'),
            _e(data['progress']['entities']),
            _e(clitext.size(data['progress']['bytes']))))
    if data['error']:
        body += '<p class="error">%s</p>' % _e(data['error'])
    body += ('<table id="kinds"><tr><th>kind</th><th>entities</th>'
             '<th>ranges</th></tr>%s</table>' % _kind_rows(data))
    body += _job('Restore', data['restore'], 'restore-kinds')
    plan = data['plan']
    body += _job('Dry run', plan, 'plan-kinds')
    if plan and plan.get('plan'):
        body += ('<table id="plan"><tr><th>kind</th><th>created</th>'
                 '<th>changed</th><th>deleted</th></tr>%s</table>' % ''.join(
                     '<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>'
                     % (_e(kind), _e(row.get('created')),
                        _e(row.get('changed')), _e(row.get('deleted')))
                     for kind, row in sorted(plan['plan'].items())))
        body += '<p>%s</p>' % _form(
            request, here + '/restore', 'Restore as planned',
            [('kinds', kind) for kind in plan['kinds']])
    if data['status'] == Snapshot.STATUS_FINISHED:
        body += '<p>%s</p>' % _form(request, here + '/restore',
                                    'Dry run of a restore',
                                    [('dry_run', 'true')])
    body += '<p>%s</p>' % _form(request, here + '/delete', 'Delete snapshot')
    return _html('Snapshot %d' % snap.id, body, status=status,
                 refresh=_busy(data))


def _act(request, handler):
    """Run a JSON handler of ``manage``; show its refusal on the page."""
    _check_form(request)
    try:
        handler(request)
    except exc.HTTPError as error:
        if error.status_code == 404:
            raise
        return _show(request, error.text.strip(), status=error.status_code)
    return None


@_page(['POST'])
def restore(request):
    """A restore, or a dry run (``dry_run``), as ``manage.restore`` does."""
    return _act(request, manage.restore) or exc.HTTPSeeOther(
        location='%spage/%s' % (ROOT, request.urlvars['id']))


@_page(['POST'])
def delete(request):
    return _act(request, manage.delete) or exc.HTTPSeeOther(location=ROOT)


ROUTES = [
    (ROOT, index),
    (ROOT + 'login', login),
    (ROOT + 'logout', logout),
    (ROOT + 'page/create', create),
    (ROOT + 'page/<id>', show),
    (ROOT + 'page/<id>/restore', restore),
    (ROOT + 'page/<id>/delete', delete),
]
