"""What the snapshot app's handlers share: responses, methods, parameters.

A handler takes a WebOb ``Request`` and returns a ``Response`` or raises a
``webob.exc`` response with a one-line reason (``access.refuse``).
"""
import functools
import json
import re
from urllib.parse import unquote_to_bytes

from webob import Response, exc

from ... import defaults
from ...exceptions import SnapshotNotFound
from .. import api
from .access import refuse

__all__ = ['text', 'json_response', 'allow', 'snapshot_or_404',
           'snapshot_number', 'check_body', 'read_params', 'ascii_int',
           'int_param', 'ids_param', 'float_param', 'bool_param',
           'MAX_BODY_BYTES', 'MAX_FORM_BYTES']

#: Largest request body the app reads: one upload batch (``wire``), as
#: large as one datastore request may be.
MAX_BODY_BYTES = defaults.MAX_REQUEST_BYTES

#: Largest body of any other request: a form of kinds and a few options.
MAX_FORM_BYTES = 64 * 1024

#: Largest datastore id, and largest integer a parameter may be: the
#: datastore's integers are signed 64-bit.
MAX_ID = 2 ** 63 - 1

# ASCII digits only: int() would also take '١', '1_0' and ' 1'.
_DIGITS = re.compile(r'[0-9]{1,19}\Z')
_DECIMAL = re.compile(r'(?=\.?[0-9])[0-9]{0,9}(\.[0-9]{0,9})?\Z')


def text(body):
    return Response(body, content_type='text/plain', charset='utf-8')


def json_response(data, status=200):
    body = json.dumps(data, sort_keys=True, separators=(',', ':'))
    return Response(body, status=status, content_type='application/json',
                    charset='utf-8')


def allow(*methods, writes=False, max_body=MAX_FORM_BYTES):
    """Refuse other methods with 405; ``GET`` allows ``HEAD`` as well.

    ``writes``: the handler writes even on GET (App Engine cron sends GET),
    so HEAD is refused rather than run, and ``SnapshotApp`` asks a tokenless
    caller over a socket to POST. ``max_body``: the largest body it takes.
    """
    allowed = set(methods)
    if 'GET' in methods and not writes:
        allowed.add('HEAD')
    header = ', '.join(sorted(allowed))

    def decorate(handler):
        @functools.wraps(handler)
        def checked(request):
            if request.method not in allowed:
                raise refuse(exc.HTTPMethodNotAllowed, 'use %s' % header,
                             headers={'Allow': header})
            return handler(request)
        checked.methods = frozenset(allowed)
        checked.writes_on_get = writes and 'GET' in allowed
        checked.max_body = max_body
        return checked
    return decorate


def check_body(request, limit):
    """Refuse a body larger than ``limit`` bytes before any of it is read.

    A chunked body that the server passes on as it is (waitress reads and
    measures it first) could be of any length: it is refused too.
    """
    length = request.content_length
    if length is None:
        if request.headers.get('Transfer-Encoding'):
            raise refuse(exc.HTTPLengthRequired,
                         'Content-Length is required')
    elif length > limit:
        raise refuse(exc.HTTPRequestEntityTooLarge,
                     'send at most %d bytes in this request' % limit)


def read_params(request):
    """Read the query and a form's body once, before any handler: a name or
    value that is not UTF-8 (WebOb would put U+FFFD for a byte), a charset
    no one knows or a broken multipart body is a 400, and so is a file
    where every parameter is a value. WebOb keeps what it read for the
    handler."""
    if request.charset.lower().replace('_', '-') not in ('utf-8', 'utf8'):
        raise refuse(exc.HTTPBadRequest, 'the form is in %s: send it in '
                     'UTF-8' % request.charset[:40])
    _strict_utf8(request.environ.get('QUERY_STRING', '').encode('latin-1'),
                 'query')
    if request.content_type == 'application/x-www-form-urlencoded':
        _strict_utf8(request.body, 'form')
    try:
        items = list(request.params.items())
    except (UnicodeDecodeError, LookupError, ValueError, TypeError):
        raise refuse(exc.HTTPBadRequest, 'the form cannot be read: send '
                     'UTF-8 fields (application/x-www-form-urlencoded or '
                     'multipart/form-data)') from None
    for name, value in items:
        if not isinstance(value, str):
            raise refuse(exc.HTTPBadRequest, 'parameter %r must be a value, '
                         'not a file' % str(name)[:40])


def _strict_utf8(fields, where):
    """Refuse the urlencoded ``fields`` (of the ``where``) unless every name
    and value is UTF-8, naming the first that is not."""
    for field in fields.split(b'&'):
        name, _, value = field.partition(b'=')
        try:
            name = unquote_to_bytes(name.replace(b'+', b' ')).decode('utf-8')
        except UnicodeDecodeError:
            raise refuse(exc.HTTPBadRequest, "a name in the %s is not UTF-8"
                         % where) from None
        try:
            unquote_to_bytes(value.replace(b'+', b' ')).decode('utf-8')
        except UnicodeDecodeError:
            raise refuse(exc.HTTPBadRequest, 'invalid %s: the %s is not UTF-8'
                         % (name[:40], where)) from None


def snapshot_or_404(snapshot_id):
    """The snapshot with this id; ``latest`` is the newest finished one.

    Anything but ``latest`` or a datastore id is a 400.
    """
    if snapshot_id == 'latest':
        snap = api.latest_snapshot()
        if snap is None:
            raise refuse(exc.HTTPNotFound, 'no finished snapshot')
        return snap
    try:
        return api.get_snapshot(snapshot_number(snapshot_id, "'latest' or "))
    except SnapshotNotFound as error:
        raise refuse(exc.HTTPNotFound, str(error)) from error


def snapshot_number(snapshot_id, other=''):
    """The datastore id ``snapshot_id`` spells, else a 400 that says it
    must be ``other`` or one."""
    number = _datastore_id(snapshot_id)
    if number is None:
        raise refuse(exc.HTTPBadRequest, "invalid snapshot id %r: must be "
                     "%san integer from 1 to %d"
                     % (snapshot_id[:40], other, MAX_ID))
    return number


def _datastore_id(text):
    """The datastore id ``text`` spells in ASCII digits, else None."""
    number = ascii_int(text)
    return number if number is not None and 0 < number <= MAX_ID else None


def _param(request, name, convert, default, check, expected):
    value = request.params.get(name)
    if value is None or value == '':
        return default
    result = convert(value)
    if result is None or not check(result):
        raise refuse(exc.HTTPBadRequest, 'invalid %s %r: must be %s'
                     % (name, value[:40], expected))
    return result


def ascii_int(value):
    """The int that ``value`` spells in up to 19 ASCII digits, else None."""
    return int(value) if _DIGITS.match(value) else None


def _decimal(value):
    return float(value) if _DECIMAL.match(value) else None


def int_param(request, name, minimum=0, maximum=MAX_ID):
    return _param(request, name, ascii_int, None,
                  lambda v: minimum <= v <= maximum,
                  'an integer from %d to %d' % (minimum, maximum))


def ids_param(request, name):
    """The datastore ids ``name`` (repeated) lists; None if not given."""
    values = request.params.getall(name)
    numbers = [_datastore_id(value) for value in values]
    for value, number in zip(values, numbers):
        if number is None:
            raise refuse(exc.HTTPBadRequest, 'invalid %s %r: must be an '
                         'integer from 1 to %d' % (name, value[:40], MAX_ID))
    return numbers or None


def float_param(request, name, default, maximum):
    return _param(request, name, _decimal, default,
                  lambda v: 0 < v <= maximum,
                  'a number of seconds from 0 to %s' % maximum)


_BOOLEANS = {'1': True, 'true': True, 'yes': True, 'on': True,
             '0': False, 'false': False, 'no': False, 'off': False}


def bool_param(request, name, default=False):
    return _param(request, name, lambda v: _BOOLEANS.get(v.lower()), default,
                  lambda v: True, 'true or false')
