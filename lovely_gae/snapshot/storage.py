"""How a range is stored: length-delimited ``EntityProto`` bytes, compressed.

Each range backup records its ``format`` and ``codec``, so a reader years
from now still knows how to read what an older version wrote. The stored
bytes of a range are one compressed stream, cut into parts no larger than
``defaults.PART_SIZE``; a writer holds one part at a time, a reader one
part, a step of what it decompresses and one record, whatever the parts
claim to hold.
"""
import bz2
import hashlib
import lzma
import zlib

from .. import defaults
from ..exceptions import BadStoredRange, UnknownCodec

__all__ = ['FORMAT', 'CODECS', 'RangeWriter', 'iter_records', 'check_codec',
           'varint']

#: Records are ``varint(length) + EntityProto bytes``, back to back.
FORMAT = 'entityproto-delimited/1'
#: Bytes of records a writer gathers before it compresses them in one call.
_RAW_BATCH = 64 * 1024


class _Identity:
    """The codec ``none``: bytes pass as they are."""

    eof = True
    unused_data = unconsumed_tail = b''

    def compress(self, data):
        return bytes(data)

    def decompress(self, data, max_length=-1):
        """As zlib does: at most ``max_length`` bytes, the rest kept in
        ``unconsumed_tail``."""
        data = memoryview(data)
        if max_length < 0:
            max_length = len(data)
        self.unconsumed_tail = data[max_length:]
        return bytes(data[:max_length])

    def flush(self):
        return b''


CODECS = {
    'bz2': (lambda: bz2.BZ2Compressor(9), bz2.BZ2Decompressor),
    'zlib': (lambda: zlib.compressobj(6), zlib.decompressobj),
    'lzma': (lambda: lzma.LZMACompressor(preset=6), lzma.LZMADecompressor),
    'none': (_Identity, _Identity),
}


def check_codec(codec):
    """``codec``, unless ``CODECS`` lacks it (``UnknownCodec``)."""
    if not isinstance(codec, str) or codec not in CODECS:
        raise UnknownCodec(codec, CODECS)
    return codec


def varint(n):
    """``n`` as a protocol buffer varint: how a record's length is stored."""
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class RangeWriter:
    """Compress records into parts; ``add_all`` and ``close`` hand out
    the full parts.

    ``count``, ``raw_size`` (bytes of records before compression), ``size``
    (stored bytes) and ``sha256`` (of the stored bytes) describe what was
    written once ``close`` has returned.
    """

    def __init__(self, codec):
        self.codec = check_codec(codec)
        self.part_size = defaults.PART_SIZE
        self._compressor = CODECS[self.codec][0]()
        self._buffer = bytearray()
        self._raw = bytearray()  # records not yet handed to the compressor
        self._hash = hashlib.sha256()
        self.count = self.size = self.raw_size = 0

    def add_all(self, records):
        """Add ``records``; yield the parts as they fill."""
        raw = self._raw
        for record in records:
            length = len(record)
            if length < 0x4000:  # the varint inline: one or two bytes
                if length < 0x80:
                    raw.append(length)
                else:
                    raw.append(length & 0x7F | 0x80)
                    raw.append(length >> 7)
            else:
                raw += varint(length)
            raw += record
            self.count += 1
            if len(raw) >= _RAW_BATCH:
                yield from self._compress(final=False)

    def close(self):
        return self._compress(final=True)

    def _compress(self, final):
        """Compress the records gathered; the parts that are full."""
        self.raw_size += len(self._raw)
        self._buffer += self._compressor.compress(self._raw)
        self._raw.clear()
        if final:
            self._buffer += self._compressor.flush()
        return self._cut(final)

    @property
    def sha256(self):
        return self._hash.hexdigest()

    def _cut(self, final):
        parts = []
        while len(self._buffer) >= self.part_size or (final and self._buffer):
            part = bytes(self._buffer[:self.part_size])
            del self._buffer[:self.part_size]
            self._hash.update(part)
            self.size += len(part)
            parts.append(part)
        return parts


#: Bytes decompressed at a time: a reader holds no more than this, the part
#: it reads and the record it gathers.
_STEP = 256 * 1024


#: What the decompressors raise on bytes they cannot read.
_CODEC_ERRORS = (OSError, zlib.error, lzma.LZMAError)


def _decompressed(parts, codec, where):
    """The bytes stored in ``parts``, decompressed ``_STEP`` at most at a
    time, so that a small part never turns into a large buffer.

    ``where()`` is ``(codec, record)`` for an error.
    """
    decompressor = CODECS[check_codec(codec)][1]()
    for data in parts:
        while True:
            try:
                out = decompressor.decompress(data, _STEP)
            except EOFError:  # bz2 and lzma, asked to go on after the end
                out = None
            except _CODEC_ERRORS as error:
                raise BadStoredRange('stored range cannot be decompressed '
                                     '(%s)' % codec, *where()) from error
            if out is None or decompressor.unused_data:
                raise BadStoredRange('stored range goes on after its end',
                                     *where())
            if out:
                yield out
            # zlib (and ``none``) hand back the input they had no room
            # for; bz2 and lzma keep it and say whether they need more.
            data = getattr(decompressor, 'unconsumed_tail', b'')
            if not data and (not out or decompressor.eof or getattr(
                    decompressor, 'needs_input', len(out) < _STEP)):
                break
    if not decompressor.eof:
        raise BadStoredRange('stored range is cut short', *where())


def iter_records(parts, codec, raw_size=None, count=None):
    """Yield the record bytes stored in ``parts`` (an iterable of bytes).

    ``raw_size`` and ``count``, when given, are what the writer recorded:
    the bytes decompress to exactly ``raw_size`` and hold ``count``
    records, or ``BadStoredRange``, raised before the reader goes much past
    them. A record longer than the datastore takes (``MAX_ENTITY_BYTES``)
    is refused before it is gathered.
    """
    limit = defaults.MAX_ENTITY_BYTES
    buffer = b''
    total = found = 0

    def where():
        return codec, found + 1

    def bad(reason):
        return BadStoredRange(reason, *where())
    for data in _decompressed(parts, codec, where):
        total += len(data)
        if raw_size is not None and total > raw_size:
            raise bad('stored range decompresses to more than the %d bytes '
                      'recorded' % raw_size)
        buffer = buffer + data if buffer else data
        offset, end = 0, len(buffer)
        while offset < end:
            byte = buffer[offset]
            if byte < 0x80:  # the length's varint, one or two bytes inline
                length, start = byte, offset + 1
            elif offset + 1 < end and buffer[offset + 1] < 0x80:
                length = (byte & 0x7F) | buffer[offset + 1] << 7
                start = offset + 2
            else:
                length, start = _read_varint(buffer, offset, where)
                if start is None:
                    break
                if length > limit:
                    raise bad('a stored record of %d bytes is larger than an '
                              'entity can be' % length)
            if start + length > end:
                break
            offset = start + length
            found += 1
            yield buffer[start:offset]
        buffer = buffer[offset:]
    if buffer:
        raise bad('stored range ends inside a record')
    if raw_size is not None and total != raw_size:
        raise bad('stored range decompresses to %d bytes, %d were recorded'
                  % (total, raw_size))
    if count is not None and found != count:
        raise bad('stored range holds %d records, %d were recorded'
                  % (found, count))


def _read_varint(buffer, offset, where):
    """``(value, offset after it)``, or ``(None, None)`` if incomplete."""
    value = shift = 0
    while offset < len(buffer):
        byte = buffer[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset
        shift += 7
        if shift > 63:
            raise BadStoredRange('a stored record\'s length is no varint',
                                 *where())
    return None, None
