"""How task arguments are stored: JSON, with tags for the few non-JSON types.

A serializer is any object with ``dumps(obj) -> str`` and ``loads(str)``.
Nothing here ever unpickles.
"""
import base64
import datetime
import json

from google.appengine.ext import db

__all__ = ['JSONSerializer', 'default_serializer']

_TAG = '__lovely__'


def _encode(obj):
    if isinstance(obj, db.Key):
        return {_TAG: 'key', 'v': str(obj)}
    if isinstance(obj, datetime.datetime):
        return {_TAG: 'datetime', 'v': obj.isoformat()}
    if isinstance(obj, bytes):
        return {_TAG: 'bytes', 'v': base64.b64encode(obj).decode('ascii')}
    raise TypeError('cannot serialize %s for a task' % type(obj).__name__)


def _decode(obj):
    tag = obj.get(_TAG)
    if tag is None:
        return obj
    value = obj['v']
    if tag == 'key':
        return db.Key(value)
    if tag == 'datetime':
        return datetime.datetime.fromisoformat(value)
    if tag == 'bytes':
        return base64.b64decode(value)
    raise ValueError('unknown tag %r in task arguments' % tag)


class JSONSerializer:
    """JSON plus datastore keys, datetimes and bytes; tuples come back as lists."""

    @staticmethod
    def dumps(obj):
        return json.dumps(obj, default=_encode, sort_keys=True,
                          separators=(',', ':'), ensure_ascii=False)

    @staticmethod
    def loads(text):
        return json.loads(text, object_hook=_decode)


default_serializer = JSONSerializer
