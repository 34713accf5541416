"""Who may call the snapshot app (see docs/security.rst).

On App Engine, requests from cron and from task queues carry headers that
App Engine strips from outside requests, so they can be trusted there and
nowhere else, and not at all in token-only mode (a server that maps ``_``
to ``-`` in header names lets anyone send them). Any other caller needs
the bearer token. Off App Engine a configured token is required as well;
with none configured, only requests from this machine (loopback, not
forwarded by a proxy) or made in-process (no ``REMOTE_ADDR``, as webtest
and ``Request.blank`` make them) get in, and only when they name this
machine in ``Host`` and come from no web page of another origin: a browser
on this machine must not be a way in, be it by a page's form (cross-site
request) or by a name that resolves to 127.0.0.1 (DNS rebinding).

``check_access`` answers how a request got in, so that a handler can ask
more of some callers (``handlers.SnapshotApp``: a tokenless caller over a
socket must POST to write).
"""
import hmac
import ipaddress
import os

from webob import exc

from ... import defaults
from ...defaults import on_app_engine

__all__ = ['configured_token', 'check_access',
           'is_loopback_host', 'refuse', 'ERROR_HEADER', 'APP_ENGINE',
           'TOKEN', 'LOOPBACK', 'IN_PROCESS']

# How a request got in: what ``check_access`` answers.
APP_ENGINE = 'app-engine'   # App Engine's cron or queue header, on App Engine
TOKEN = 'token'             # the bearer token
LOOPBACK = 'loopback'       # no token configured; a socket on this machine
IN_PROCESS = 'in-process'   # no token configured; no socket at all

_PROXY_HEADERS = ('HTTP_X_FORWARDED_FOR', 'HTTP_FORWARDED', 'HTTP_X_REAL_IP')

_OFF = ('', '0', 'false', 'no', 'off')

#: The header, ``X-Lovely-Gae: error``, that marks an error as the app's
#: own: a client tells it from a page of whatever else answers at the URL
#: (a 404 where no app is mounted).
ERROR_HEADER = 'X-Lovely-Gae'


def refuse(error_class, reason, headers=None, **kw):
    """A ``webob.exc`` response whose body is the one-line reason, marked
    as the app's (``ERROR_HEADER``)."""
    headers = dict(headers or {})
    headers[ERROR_HEADER] = 'error'
    return error_class(text=reason + '\n', content_type='text/plain',
                       charset='utf-8', headers=headers, **kw)


def token_only():
    """Whether ``$LOVELY_GAE_TOKEN_ONLY`` asks for token-only mode.

    Any value but an empty one, ``0``, ``false``, ``no`` or ``off`` does:
    a typo must not turn the mode off.
    """
    value = os.environ.get(defaults.TOKEN_ONLY_ENV, '')
    return value.strip().lower() not in _OFF


def configured_token(token=None):
    """The token given, else ``$LOVELY_GAE_TOKEN``, else None."""
    return token or os.environ.get(defaults.TOKEN_ENV) or None


def _bearer(request):
    header = request.headers.get('Authorization', '')
    scheme, _, value = header.partition(' ')
    return value.strip() if scheme.lower() == 'bearer' else None


def _is_loopback(environ):
    if any(environ.get(h) for h in _PROXY_HEADERS):
        return False
    addr = environ.get('REMOTE_ADDR')
    if addr is None:
        return True  # in-process: no socket at all
    try:
        return ipaddress.ip_address(addr.split('%')[0]).is_loopback
    except ValueError:
        return False


def is_loopback_host(host):
    """Whether a host name (``Host`` header form, port allowed) is this machine."""
    name = host.lower()
    if name.startswith('['):
        name = name[1:].partition(']')[0]
    elif name.count(':') == 1:
        name = name.partition(':')[0]
    if name == 'localhost' or name.endswith('.localhost'):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _from_another_site(request):
    if request.headers.get('Sec-Fetch-Site') in ('cross-site', 'same-site'):
        return True
    origin = request.headers.get('Origin')
    if origin is None:
        return False
    return origin != request.host_url


def check_access(request, token=None, app_engine_headers=None):
    """How ``request`` got in (``TOKEN``, ...); else raise a 401/403 response.

    ``app_engine_headers``: trust App Engine's cron and queue headers (None:
    only when running on App Engine and not in token-only mode, see
    ``token_only``; False: never).
    """
    token = configured_token(token)
    on_gae = on_app_engine()
    if app_engine_headers is None:
        app_engine_headers = on_gae and not token_only()
    if app_engine_headers:
        if (request.headers.get('X-Appengine-Cron') == 'true'
                or request.headers.get('X-AppEngine-QueueName')):
            return APP_ENGINE
    elif token is None and not on_gae:
        # On App Engine every request comes through its front end, a
        # proxy: nobody there is "on this machine".
        if (_is_loopback(request.environ) and is_loopback_host(request.host)
                and not _from_another_site(request)):
            if request.environ.get('REMOTE_ADDR') is None:
                return IN_PROCESS
            return LOOPBACK
        raise refuse(exc.HTTPForbidden,
                     'no token configured: only loopback callers are served')
    given = _bearer(request)
    if given is None:
        raise refuse(exc.HTTPUnauthorized, 'a bearer token is required',
                     headers={'WWW-Authenticate': 'Bearer'})
    if token is None or not hmac.compare_digest(given.encode(),
                                                token.encode()):
        raise refuse(exc.HTTPForbidden, 'wrong token')
    return TOKEN
