"""Bad input says what went wrong one way: a ``LovelyGaeError`` subclass
with its data as attributes and a one-line message, never a plain
ValueError, TypeError or a codec's own error."""
import io
import struct

import pytest

from lovely_gae import entities
from lovely_gae.exceptions import (BadDatastoreFile, BadEntity,
                                   BadSerializedText, BadStoredRange,
                                   LovelyGaeError, NotSerializable,
                                   UnknownCodec)
from lovely_gae.serializers import JSONSerializer
from lovely_gae.snapshot.transfer import devfile, wire
from lovely_gae.snapshot import storage


def raised(kind, call, *args):
    """The error ``call(*args)`` raises: a ``kind``, one line."""
    with pytest.raises(LovelyGaeError) as info:
        call(*args)
    error = info.value
    assert isinstance(error, kind), repr(error)
    assert '\n' not in str(error)
    return error


def stored(codec, records):
    writer = storage.RangeWriter(codec)
    return list(writer.add_all(records)) + writer.close()


def test_an_unknown_codec(gae_testbed):
    error = raised(UnknownCodec, storage.check_codec, 'rar')
    assert error.codec == 'rar'
    assert str(error) == ("invalid codec 'rar': unknown (known: bz2, lzma, "
                          "none, zlib)")
    error = raised(UnknownCodec, storage.RangeWriter, ['bz2'])
    assert error.codec == ['bz2']


@pytest.mark.parametrize('codec', ['bz2', 'zlib', 'lzma'])
def test_bytes_a_codec_cannot_decompress(codec):
    error = raised(BadStoredRange, list,
                   storage.iter_records([b'no compressed stream'], codec))
    assert (error.codec, error.record) == (codec, 1)
    assert str(error) == 'stored range cannot be decompressed (%s)' % codec


def test_a_stored_range_names_the_record_it_went_wrong_in():
    parts = stored('zlib', [b'first', b'second', b'third'])
    whole = b''.join(parts)
    error = raised(BadStoredRange, list,
                   storage.iter_records([whole[:-4]], 'zlib'))
    assert (error.codec, error.record) == ('zlib', 4)
    assert str(error) == 'stored range is cut short'
    error = raised(BadStoredRange, list, storage.iter_records(
        stored('none', [b'first', b'second']) + [b'\x05abc'], 'none'))
    assert (error.codec, error.record) == ('none', 3)
    assert error.reason == str(error) == 'stored range ends inside a record'
    error = raised(BadStoredRange, list,
                   storage.iter_records(parts, 'zlib', count=2))
    assert str(error) == 'stored range holds 3 records, 2 were recorded'


def test_an_upload_body_whose_records_cannot_be_told_apart(gae_testbed):
    error = raised(BadStoredRange, wire.decode, b'\x05abc')
    assert (error.codec, error.record) == ('none', 1)
    assert str(error) == 'stored range ends inside a record'
    error = raised(BadStoredRange, wire.decode, b'\xff' * 11)
    assert str(error) == "a stored record's length is no varint"


def test_a_file_that_is_no_datastore_file(tmp_path):
    error = raised(BadDatastoreFile, list,
                   devfile.iter_entities(io.BytesIO(b'not pickled')))
    assert (error.path, error.record) == (None, 1)
    assert str(error) == "not a datastore file: it starts with b'not pick'"
    path = tmp_path / 'cut'
    with open(path, 'wb') as out:
        writer = devfile.DevFileWriter(out)
        writer.add_many([b'one', b'two'])
        writer.close()
    path.write_bytes(path.read_bytes()[:-6])
    with open(path, 'rb') as fileobj:
        error = raised(BadDatastoreFile, list, devfile.iter_entities(fileobj))
    assert (error.path, error.record) == (str(path), 2)
    assert error.reason == 'cut short after 1 entity'
    assert str(error) == '%s: cut short after 1 entity' % path


@pytest.mark.parametrize('text', [b'\xff\xfe', '\u0100'.encode('utf-8')])
def test_a_protocol_1_record_that_is_no_latin_1_text(text):
    data = (b'](c_codecs\nencode\n(X' + struct.pack('<I', len(text)) + text
            + b'X\x06\x00\x00\x00latin1tRe.')
    error = raised(BadDatastoreFile, list,
                   devfile.iter_entities(io.BytesIO(data)))
    assert error.record == 1
    assert str(error) == ('not a datastore file: an entity that is no '
                          'latin-1 text')


def write_file(path, records):
    with open(path, 'wb') as out:
        writer = devfile.DevFileWriter(out)
        writer.add_many(records)
        writer.close()


def entity(name, namespace=''):
    proto = entities.EntityProto()
    proto.key.app = 'app'
    proto.key.name_space = namespace
    element = proto.key.path.element.add()
    element.type, element.name = 'Dummy', name
    proto.entity_group.element.add().CopyFrom(element)
    return proto.SerializeToString()


@pytest.mark.parametrize('damaged, reason, read_reason', [
    (b'\xff', 'cannot be decoded', 'cannot be decoded'),
    (b'\x0b\x0c', 'an entity lacks key, entity_group',  # no key at all
     'its key is damaged'),
])
def test_a_damaged_entity_of_a_datastore_file(gae_testbed, tmp_path,
                                              damaged, reason, read_reason):
    path = tmp_path / 'damaged'
    write_file(path, [entity('a'), damaged])
    error = raised(BadDatastoreFile, devfile.count_kinds, str(path))
    assert (error.path, error.record) == (str(path), 2)
    assert str(error) == '%s: entity 2: %s' % (path, read_reason)
    error = raised(BadEntity, devfile.check_file, str(path))
    assert (error.path, error.record) == (str(path), 2)
    assert error.reason == reason
    assert str(error) == '%s: entity 2: %s' % (path, reason)


def test_an_entity_of_a_file_an_upload_refuses(gae_testbed, tmp_path):
    path = tmp_path / 'own'
    write_file(path, [entity('a'), entity('b', 'lovely_gae')])
    error = raised(BadEntity, devfile.check_file, str(path))
    assert (error.path, error.record) == (str(path), 2)
    assert error.reason == "entities of namespace 'lovely_gae' are the " \
        "library's own"
    assert str(error) == '%s: entity 2: %s' % (path, error.reason)


def test_a_value_the_serializer_cannot_store():
    error = raised(NotSerializable, JSONSerializer.dumps, {'x': object()})
    assert error.type_name == 'object'
    assert str(error) == 'cannot serialize object'


@pytest.mark.parametrize('text, message', [
    ('{"a": ', 'is not JSON: Expecting value: line 1 column 7 (char 6)'),
    ('[' * 100000, 'is nested too deeply'),
    ('{"__lovely__": "pickle", "v": "x"}', "has an unknown tag 'pickle'"),
    ('{"__lovely__": ["key"], "v": "x"}', "has an unknown tag ['key']"),
    ('{"__lovely__": "key", "v": "not a key"}',
     'has a key value that cannot be read'),
    ('{"__lovely__": "key"}', 'has a key value that cannot be read'),
    ('{"__lovely__": "datetime", "v": 5}',
     'has a datetime value that cannot be read'),
    ('{"__lovely__": "bytes", "v": "#!"}',
     'has a bytes value that cannot be read'),
])
def test_text_the_serializer_cannot_read(gae_testbed, text, message):
    error = raised(BadSerializedText, JSONSerializer.loads, text)
    assert error.reason == message
    assert str(error) == 'serialized text ' + message
