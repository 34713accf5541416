"""What the client takes of an app's answer: nothing it has not bounded.

A body is read as it came over the wire and never unpacked: an answer in
any ``Content-Encoding`` but identity is refused before a byte of it is
read, so that a few kilobytes cannot grow into gigabytes on the way in.
A body is read up to a number of bytes, and whole within a deadline: the
read timeout of ``requests`` holds for each read alone, and a server
sending a byte at a time would never reach it.
"""
import http.client
import json
import re
import time

import requests

from ...exceptions import AccessDenied, DownloadError
from ..app.access import ERROR_HEADER

__all__ = ['RemoteError', 'NotTheApp', 'Transient', 'TRANSIENT', 'Deadline',
           'check', 'chunks', 'read_json']

#: Answers worth asking again for: the app or a proxy was busy.
RETRY_STATUS = frozenset([429, 500, 502, 503, 504])

#: Bytes of an error answer read for the one line it is shown by.
ERROR_BYTES = 4096

_LENGTH = re.compile(r'[0-9]{1,19}')


class RemoteError(DownloadError):
    """The app answered with an error; ``reason`` is its one line."""

    def __init__(self, status, reason, url):
        self.status, self.reason, self.url = status, reason, url
        super().__init__('%s (HTTP %d)' % (reason, status))


class NotTheApp(RemoteError):
    """An error answer not of the app: no ``ERROR_HEADER`` marks it (a web
    server's page where no app is mounted, a proxy's)."""

    def __init__(self, status, reason, url):
        base = url.partition('/lovely.gae/')[0]
        if status == 404:
            reason = 'no lovely_gae app at %s/lovely.gae/' % base
            hint = ': is getApp() mounted under /lovely.gae/?'
            line = '%s (HTTP %d)%s' % (reason, status, hint)
        else:
            line = '%s (HTTP %d, not from a lovely_gae app at %s)' % (
                reason, status, base)
        DownloadError.__init__(self, line)
        self.status, self.reason, self.url = status, reason, url


class Transient(Exception):
    """A try that may succeed when repeated."""


#: What a retry can mend: a connection cut, a timeout, a busy app.
TRANSIENT = (requests.ConnectionError, requests.Timeout, Transient)


class Deadline:
    """The moment, ``seconds`` from now, by which an answer must be whole."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def check(self):
        if time.monotonic() > self.at:
            raise Transient('no whole answer within %g seconds'
                            % self.seconds)


def check(response, deadline, retry=False):
    """``response`` if it is a success to read; else the error it is.

    With ``retry``, an answer in ``RETRY_STATUS`` is ``Transient``.
    """
    status = response.status_code
    if 300 <= status < 400:
        # Never followed: the token would go along, maybe elsewhere.
        raise RemoteError(status, 'redirected to %s; not followed, use that '
                          'URL if you trust it'
                          % response.headers.get('Location', '?')[:200],
                          response.url)
    coding = response.headers.get('Content-Encoding', '').strip().lower()
    if coding not in ('', 'identity'):
        raise RemoteError(status, 'the answer is in Content-Encoding %s; '
                          'only identity is accepted' % _show(coding),
                          response.url)
    if status < 400:
        return response
    reason = _error_line(response, deadline)
    if retry and status in RETRY_STATUS:
        raise Transient('HTTP %d: %s' % (status, reason))
    if response.headers.get(ERROR_HEADER) != 'error':
        raise NotTheApp(status, reason, response.url)
    if status in (401, 403):
        raise AccessDenied(reason, status)
    raise RemoteError(status, reason, response.url)


def _show(text):
    return repr(text if len(text) <= 60 else text[:57] + '...')


def _error_line(response, deadline):
    """The first line of an error answer, of its first ``ERROR_BYTES``."""
    head = b''
    try:
        for chunk in chunks(response, None, deadline, ERROR_BYTES):
            head += chunk
            if len(head) >= ERROR_BYTES:
                break  # the rest is never read: the connection is closed
    except Transient:
        pass  # what came is the reason, if anything did
    text = head[:ERROR_BYTES].decode('utf-8', 'replace').strip()
    kind = response.headers.get('Content-Type', '').partition(';')[0]
    kind = kind.strip().lower()
    if text and kind not in ('', 'text/plain'):  # a page: no line to show
        return 'an HTML page' if kind == 'text/html' else (
            'an answer of type %s' % _show(kind))
    line = text.splitlines()[0][:200] if text else response.reason
    # A terminal shows the line: no escape sequence gets through.
    return ''.join(c if c.isprintable() else '?' for c in line or 'error')


def chunks(response, limit, deadline, size):
    """Yield the body of ``response`` as it came, a read at a time.

    More than ``limit`` bytes (None: any) is a ``RemoteError``; a body
    cut short, or not whole by the ``deadline``, is ``Transient``.
    """
    expected = response.headers.get('Content-Length')
    if expected is not None:
        # Not ``isdigit``: it takes '²', and int() refuses 5,000 digits.
        if not _LENGTH.fullmatch(expected):
            raise RemoteError(response.status_code, 'bad Content-Length %r'
                              % expected[:40], response.url)
        expected = int(expected)
    if limit is not None and (expected or 0) > limit:
        raise _too_large(response, limit)
    # http.client's read1 returns what one read of the socket brings,
    # where urllib3 waits for all it asked for, however slowly it comes:
    # only so is the deadline looked at while bytes trickle in.
    body = response.raw._fp
    got = 0
    while True:
        deadline.check()
        try:
            chunk = body.read1(size)
        except (OSError, ValueError, http.client.HTTPException) as error:
            raise Transient(_why(error)) from error
        if not chunk:
            break
        got += len(chunk)
        if limit is not None and got > limit:
            raise _too_large(response, limit)
        yield chunk
    if expected is not None and got < expected:
        raise Transient('connection closed after %d of %d bytes'
                        % (got, expected))
    # Reads nothing, but ends http.client's answer, which read1 leaves
    # open at its end, so that the connection is used again.
    body.read(0)
    response.raw.release_conn()


def _why(error):
    if isinstance(error, TimeoutError):
        return 'timed out'
    text = getattr(error, 'strerror', None) or str(error)
    return text.splitlines()[0][:200] if text else type(error).__name__


def _too_large(response, limit):
    return RemoteError(response.status_code, 'the answer is longer than '
                       '%d bytes' % limit, response.url)


def read_json(response, limit, deadline, size):
    """The JSON of ``response``, of at most ``limit`` bytes."""
    body = b''.join(chunks(response, limit, deadline, size))
    try:
        return json.loads(body)
    except RecursionError as error:
        raise RemoteError(response.status_code, 'the answer is JSON nested '
                          'too deeply to read', response.url) from error
    except ValueError as error:
        raise RemoteError(response.status_code, 'the answer is not JSON',
                          response.url) from error
