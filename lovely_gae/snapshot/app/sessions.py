"""The HTML page's sessions: a signed cookie that lasts a working day at
most, and ends for good at logout.

The cookie holds ``<nonce>.<issued>.<signature>``: a random nonce, the
second it was issued, and an HMAC of both under the key (the token). It is
good for ``defaults.SESSION_SECONDS`` from then, and not at all once its
nonce is recorded as ended: logging out records it, so that a copy of the
cookie taken before opens nothing after.
"""
import datetime
import hashlib
import hmac
import secrets
import time

from google.appengine.ext import db

from ... import defaults
from ...base import LibraryModel, retrying, utcnow

__all__ = ['sign', 'start', 'check', 'end']

#: Seconds a cookie's time may lie ahead of this clock (clocks of
#: instances differ a little).
_SKEW = 60


class EndedSession(LibraryModel):
    """A session logged out of (key name: its nonce), until it would have
    expired anyway."""

    until = db.DateTimeProperty()

    @classmethod
    def kind(cls):
        return 'LovelyGaeEndedSession'


def sign(key, purpose, value):
    """The hex HMAC-SHA256 of ``value`` for ``purpose`` under ``key``."""
    message = b'%s:%s' % (purpose, value.encode('utf-8', 'replace'))
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def start(key, now=None):
    """The value of a new session's cookie."""
    value = '%s.%d' % (secrets.token_urlsafe(18),
                       int(time.time() if now is None else now))
    return '%s.%s' % (value, sign(key, b'session', value))


def check(key, cookie, now=None):
    """The nonce of a session cookie that is signed, current and not
    ended; else None."""
    value, _, signature = (cookie or '')[:200].rpartition('.')
    nonce, _, issued = value.partition('.')
    # Bytes: compare_digest raises on a str that is not ASCII.
    if not (nonce and hmac.compare_digest(
            signature.encode('utf-8', 'replace'),
            sign(key, b'session', value).encode())):
        return None
    now = time.time() if now is None else now
    if not (issued.isascii() and issued.isdigit()
            and now - defaults.SESSION_SECONDS < int(issued) <= now + _SKEW):
        return None
    if db.get(EndedSession.key_for(nonce)) is not None:
        return None
    return nonce


def end(nonce):
    """Record that the session ``nonce`` has ended; forget the records of
    sessions that would have expired by now."""
    now = utcnow()
    lifetime = datetime.timedelta(seconds=defaults.SESSION_SECONDS + _SKEW)
    retrying(EndedSession(key_name=nonce, until=now + lifetime).put)
    expired = EndedSession.all(keys_only=True).filter('until <', now)
    retrying(db.delete, expired.fetch(defaults.MAX_REQUEST_ENTITIES))

