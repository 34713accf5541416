"""How task arguments are stored: JSON, with tags for the few non-JSON types.

A serializer is any object with ``dumps(obj) -> str`` and ``loads(str)``.
Nothing here ever unpickles.
"""
import base64
import datetime
import json

from google.appengine.api import datastore_errors
from google.appengine.ext import db

from .exceptions import BadSerializedText, NotSerializable

__all__ = ['JSONSerializer', 'default_serializer']

_TAG = '__lovely__'


def _encode(obj):
    if isinstance(obj, db.Key):
        return {_TAG: 'key', 'v': str(obj)}
    if isinstance(obj, datetime.datetime):
        return {_TAG: 'datetime', 'v': obj.isoformat()}
    if isinstance(obj, bytes):
        return {_TAG: 'bytes', 'v': base64.b64encode(obj).decode('ascii')}
    raise NotSerializable(obj)


_DECODERS = {
    'key': db.Key,
    'datetime': datetime.datetime.fromisoformat,
    'bytes': lambda value: base64.b64decode(value, validate=True),
}


def _decode(obj):
    tag = obj.get(_TAG)
    if tag is None:
        return obj
    decode = _DECODERS.get(tag) if isinstance(tag, str) else None
    if decode is None:
        raise BadSerializedText('has an unknown tag %r' % (tag,))
    value = obj.get('v')
    try:
        if not isinstance(value, str):
            raise TypeError(value)
        return decode(value)
    except (TypeError, ValueError, datastore_errors.Error) as error:
        raise BadSerializedText('has a %s value that cannot be read'
                                % tag) from error


class JSONSerializer:
    """JSON plus datastore keys, datetimes and bytes; tuples come back as lists."""

    @staticmethod
    def dumps(obj):
        return json.dumps(obj, default=_encode, sort_keys=True,
                          separators=(',', ':'), ensure_ascii=False)

    @staticmethod
    def loads(text):
        try:
            return json.loads(text, object_hook=_decode)
        except BadSerializedText:
            raise
        except RecursionError:
            raise BadSerializedText('is nested too deeply') from None
        except (TypeError, ValueError) as error:
            raise BadSerializedText('is not JSON: %s' % error) from None


default_serializer = JSONSerializer
