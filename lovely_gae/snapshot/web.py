"""What the snapshot app's handlers share: responses, methods, parameters.

A handler takes a WebOb ``Request`` and returns a ``Response`` or raises a
``webob.exc`` response with a one-line reason (``access.refuse``).
"""
import functools
import json

from webob import Response, exc

from ..exceptions import SnapshotNotFound
from . import api
from .access import refuse

__all__ = ['text', 'json_response', 'allow', 'snapshot_or_404',
           'int_param', 'float_param', 'bool_param']


def text(body, status=200):
    return Response(body, status=status, content_type='text/plain',
                    charset='utf-8')


def json_response(data, status=200):
    body = json.dumps(data, sort_keys=True, separators=(',', ':'))
    return Response(body, status=status, content_type='application/json',
                    charset='utf-8')


def allow(*methods):
    """Refuse other methods with 405; ``GET`` allows ``HEAD`` as well."""
    allowed = set(methods) | ({'HEAD'} if 'GET' in methods else set())
    header = ', '.join(sorted(allowed))

    def decorate(handler):
        @functools.wraps(handler)
        def checked(request):
            if request.method not in allowed:
                raise refuse(exc.HTTPMethodNotAllowed, 'use %s' % header,
                             headers={'Allow': header})
            return handler(request)
        checked.methods = frozenset(allowed)
        return checked
    return decorate


def snapshot_or_404(snapshot_id):
    """The snapshot with this id; ``latest`` is the newest finished one."""
    if snapshot_id == 'latest':
        snap = api.latest_snapshot()
        if snap is None:
            raise refuse(exc.HTTPNotFound, 'no finished snapshot')
        return snap
    try:
        return api.get_snapshot(snapshot_id)
    except SnapshotNotFound as error:
        raise refuse(exc.HTTPNotFound, str(error)) from error


def _param(request, name, convert, default, check, expected):
    value = request.params.get(name)
    if value is None or value == '':
        return default
    try:
        result = convert(value)
    except ValueError:
        result = None
    if result is None or not check(result):
        raise refuse(exc.HTTPBadRequest, 'invalid %s %r: must be %s'
                     % (name, value, expected))
    return result


def int_param(request, name, default=None, minimum=0):
    return _param(request, name, int, default, lambda v: v >= minimum,
                  'an integer >= %d' % minimum)


def float_param(request, name, default=None, maximum=None):
    return _param(request, name, float, default,
                  lambda v: 0 < v and (maximum is None or v <= maximum),
                  'a number of seconds from 0 to %s' % maximum)


_BOOLEANS = {'1': True, 'true': True, 'yes': True, 'on': True,
             '0': False, 'false': False, 'no': False, 'off': False}


def bool_param(request, name):
    return _param(request, name, lambda v: _BOOLEANS.get(v.lower()), False,
                  lambda v: True, 'true or false')
