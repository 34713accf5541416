"""The file a development datastore loads: ``DatastoreFileStub``'s format.

The SDK's file stub reads a pickled list of encoded ``EntityProto`` bytes
(``google/appengine/api/datastore_file_stub.py``). We only ever *write* that
pickle, opcode by opcode, streaming, so a download never holds the whole
list in memory; reading a file back (ours, or one the SDK saved) goes
through ``iter_entities``, which parses the few opcodes such a list takes
and refuses any other.
"""
import os
import stat
import struct
import tempfile

from google.protobuf.message import DecodeError

from ... import defaults
from ...entities import EntityProto, sort_key
from ...exceptions import (BadDatastoreFile, BadEntity, OutFileExists,
                           UnsafePath)
from . import wire

__all__ = ['DevFileWriter', 'iter_entities', 'temp_file', 'fsync_path',
           'publish', 'checked_entities', 'check_file', 'count_kinds', 'summarize',
           'private_dir', 'open_private', 'whole_key']

_PROTO3 = b'\x80\x03'
_EMPTY_LIST, _MARK, _APPENDS, _STOP = b']', b'(', b'e', b'.'
_SHORT_BINBYTES, _BINBYTES = b'C', b'B'
#: Opcodes of a record or an integer: after the SDK's one trailing
#: integer, none may come.
_RECORDS = frozenset([b'c', _SHORT_BINBYTES, _BINBYTES, b'\x8e',
                      b'L', b'I', b'J', b'K', b'M', b'\x8a'])
_BATCH = 1000
#: Bytes ``add_many`` gathers at most before it writes them.
_FLUSH_BYTES = 1 << 20


class DevFileWriter:
    """Write entity bytes to ``fileobj`` as a pickled list, one at a time."""

    def __init__(self, fileobj):
        self._file = fileobj
        self._pending = 0
        self.count = 0
        fileobj.write(_PROTO3 + _EMPTY_LIST + _MARK)

    def add_many(self, records):
        """Add ``records``, with one write for them all."""
        out = bytearray()
        pending = self._pending
        pack = struct.Struct('<I').pack
        for data in records:
            size = len(data)
            if size < 256:
                out += _SHORT_BINBYTES
                out.append(size)
            else:
                out += _BINBYTES + pack(size)
            out += data
            self.count += 1
            pending += 1
            if pending >= _BATCH:
                out += _APPENDS + _MARK
                pending = 0
            if len(out) >= _FLUSH_BYTES:
                self._file.write(out)
                out.clear()
        self._pending = pending
        self._file.write(out)

    def close(self):
        self._file.write(_APPENDS + _STOP)


#: Bytes of a line of the file at most: its lines name calls and numbers.
_LINE = 64


def _protocol1_bytes(fileobj, read, bounded, bad):
    """Bytes as protocol 1 pickles them: ``_codecs.encode(text, 'latin1')``.

    The SDK's file stub saves with protocol 1. The call is recognised by
    its exact opcodes and its result computed here; nothing is called.
    """
    target = fileobj.readline(_LINE) + fileobj.readline(_LINE)
    if target == b'_codecs\nencode\n' and read(2) == b'(X':
        # Each byte of the entity is a character, of up to 2 UTF-8 bytes.
        text = read(bounded(struct.unpack('<I', read(4))[0], 2))
        if read(13) == b'X\x06\x00\x00\x00latin1tR':
            try:
                return text.decode('utf-8').encode('latin-1')
            except UnicodeError:
                raise bad('not a datastore file: an entity that is no '
                          'latin-1 text') from None
    elif target == b'__builtin__\nbytes\n' and read(2) == b')R':
        return b''
    raise bad('not a datastore file: it calls %r'
              % '.'.join(target.decode('latin-1').split()))


def iter_entities(fileobj):
    """Yield the entity bytes of a file ``DevFileWriter`` or the SDK wrote.

    Understands only the opcodes of a flat list of bytes, plus the integer
    the SDK appends after them; anything else is refused
    (``BadDatastoreFile``: what is wrong, the file named if it has a
    name), never unpickled.
    """
    path = getattr(fileobj, 'name', None)
    found = 0
    ended = False  # by the SDK's trailing integer: no record may follow

    def bad(reason):
        return BadDatastoreFile(reason, path if isinstance(path, str)
                                else None, found + 1)

    def cut_short():
        return bad('cut short after %d %s' % (
            found, 'entity' if found == 1 else 'entities'))

    def read(size):
        data = fileobj.read(size)
        if len(data) != size:
            raise cut_short()
        return data

    def bounded(size, factor=1):
        # The length of a record is read before the record.
        if size > defaults.MAX_ENTITY_BYTES * factor:
            raise bad('entity %d claims %d bytes, more than an entity '
                      'takes' % (found + 1, size))
        return size
    header = fileobj.read(1)
    if header == b'\x80':
        header += fileobj.read(1)
    if not header:
        raise bad('not a datastore file: it is empty')
    # Protocol 1 starts right with the list.
    if header not in (_EMPTY_LIST, b'\x80\x02', b'\x80\x03', b'\x80\x04',
                      b'\x80\x05'):
        raise bad('not a datastore file: it starts with %r'
                  % (header + fileobj.read(8 - len(header))))
    while True:
        op = fileobj.read(1)
        if op in (_EMPTY_LIST, _MARK, _APPENDS):
            continue
        if ended and op in _RECORDS:
            raise bad('not a datastore file: a number among its entities')
        if op == b'c':
            data = _protocol1_bytes(fileobj, read, bounded, bad)
        elif op in (b'L', b'I'):  # protocol 1's trailing timestamp
            if not fileobj.readline(_LINE).endswith(b'\n'):
                raise cut_short()
            ended = True
            continue
        elif op == _SHORT_BINBYTES:
            data = read(read(1)[0])
        elif op == _BINBYTES:
            data = read(bounded(struct.unpack('<I', read(4))[0]))
        elif op == b'\x8e':  # BINBYTES8
            data = read(bounded(struct.unpack('<Q', read(8))[0]))
        elif op in (b'J', b'K', b'M', b'\x8a'):  # a trailing timestamp
            read({b'J': 4, b'K': 1, b'M': 2}.get(op) or read(1)[0])
            ended = True
            continue
        elif op in (b'a', b'\x95', b'q', b'r', b'\x94'):
            # APPEND, FRAME, memo puts: carry no data of their own
            read({b'a': 0, b'\x95': 8, b'q': 1, b'r': 4, b'\x94': 0}[op])
            continue
        elif op == _STOP:
            return
        elif op == b'':
            raise cut_short()
        else:
            raise bad('not a datastore file: a pickle of something else '
                      '(opcode %r)' % op)
        found += 1
        yield data


def _reserved(prop):
    name = prop.name  # bytes if it is not UTF-8: ``check_entity`` says so
    return isinstance(name, str) and name.startswith('__') and name.endswith(
        '__')


def read_entity(record):
    """The ``EntityProto`` of a record, as a datastore takes it in a put.

    A file the SDK's stub saved holds entities as the stub stores them,
    with properties of its own (``__metadata__``, ``__scatter__``) that a
    put refuses; they are dropped. Applications cannot have such names.
    """
    entity = EntityProto.FromString(record)
    for props in (entity.property, entity.raw_property):
        for index in range(len(props) - 1, -1, -1):
            if _reserved(props[index]):
                del props[index]
    return entity


def temp_file(path):
    """An open temporary file beside ``path``: ``(fileobj, temp_path)``."""
    directory, name = os.path.split(os.path.abspath(path))
    fd, temp_path = tempfile.mkstemp(prefix='.%s.' % name, suffix='.tmp',
                                     dir=directory)
    return os.fdopen(fd, 'wb'), temp_path


def fsync_path(path, flags=0):
    """Flush the file or directory at ``path`` (opened with ``flags``) to
    the disk."""
    fd = os.open(path, os.O_RDONLY | flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(temp_path, path):
    """Give ``temp_path`` the name ``path`` atomically, never overwriting.

    The file's bytes reach the disk before it gets its name, and the name
    before this returns: a crash leaves the whole file or none.
    """
    fsync_path(temp_path, os.O_NOFOLLOW)
    try:
        os.link(temp_path, path)
    except FileExistsError:
        os.unlink(temp_path)
        raise OutFileExists(path) from None
    except OSError:
        if os.path.lexists(path):
            os.unlink(temp_path)
            raise OutFileExists(path) from None
        os.replace(temp_path, path)  # no hard links here
    else:
        os.unlink(temp_path)
    fsync_path(os.path.dirname(os.path.abspath(path)), os.O_DIRECTORY)


def private_dir(path):
    """Make directory ``path`` for this user alone (0700), or check that
    it is one already; ``UnsafePath`` if it is anything else."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise UnsafePath(path, 'is a symbolic link')
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafePath(path, 'is not a directory')
    if info.st_uid != os.geteuid():
        raise UnsafePath(path, 'belongs to another user')
    if info.st_mode & 0o077:
        raise UnsafePath(path, 'is open to other users (mode %o)'
                         % stat.S_IMODE(info.st_mode))


def open_private(path, mode='rb'):
    """``open(path, mode)`` that never follows a symbolic link; ``'r+b'``
    and ``'wb'`` create the file (0600) if there is none."""
    flags = {'rb': os.O_RDONLY, 'r+b': os.O_RDWR | os.O_CREAT,
             'wb': os.O_WRONLY | os.O_CREAT | os.O_TRUNC}[mode]
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW, 0o600)
    except OSError as error:
        if os.path.islink(path):
            raise UnsafePath(path, 'is a symbolic link') from error
        raise
    return os.fdopen(fd, mode)


def checked_entities(path):
    """The entities of a datastore file as ``read_entity`` reads them, each
    checked as an upload checks it (``wire.check_entity``).

    ``BadEntity`` names the first one a datastore would not take.
    """
    with open(path, 'rb') as fileobj:
        for number, record in enumerate(iter_entities(fileobj), 1):
            try:
                yield wire.check_entity(read_entity(record))
            except BadEntity as error:
                raise BadEntity(error.reason, path, number) from error
            except DecodeError as error:
                raise BadEntity('cannot be decoded', path, number) from error


def _count(entities):
    counts = {}
    for entity in entities:
        kind = entity.key.path.element[-1].type
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def check_file(path):
    """``{kind: entities}`` of a file an upload would take whole; else
    ``BadEntity``, or ``BadDatastoreFile`` if it is no datastore file."""
    return _count(checked_entities(path))


def _read(path):
    """The entities of any datastore file (the library's own too), each
    with a key; ``BadDatastoreFile`` at the first that is damaged."""
    with open(path, 'rb') as fileobj:
        for number, data in enumerate(iter_entities(fileobj), 1):
            try:
                entity = read_entity(data)
            except DecodeError:
                entity = None
            if entity is None or not whole_key(entity.key):
                raise BadDatastoreFile('entity %d: %s' % (
                    number, 'cannot be decoded' if entity is None
                    else 'its key is damaged'), path, number)
            yield entity


def first_app_id(path):
    """The app id of the first key in the file (a download's keys are all
    of one app); None if it holds no entity."""
    for entity in _read(path):
        return entity.key.app
    return None


def whole_key(reference):
    """Whether ``reference`` has a path, and text where it needs it
    (protobuf gives bytes for a string that is not UTF-8)."""
    return bool(reference.path.element) and isinstance(
        reference.app, str) and isinstance(
        reference.name_space, str) and all(
            isinstance(element.type, str) and element.type and (
                isinstance(element.name, str))
            for element in reference.path.element)


def count_kinds(path):
    """``{kind: entities}`` of any datastore file (the library's own
    entities too); ``BadDatastoreFile`` if damaged."""
    return _count(_read(path))


#: (Namespace, kind) pairs ``summarize`` keeps track of at most: a file of
#: more is refused rather than let grow what it holds in memory.
MAX_KINDS = 10000


def _printable(text):
    return text if text.isprintable() else repr(text)[1:-1]


def key_text(reference):
    """A ``Reference``'s path as people read it, ``Parent:1/Child:'a'``;
    what the file says is escaped, never passed to a terminal as is."""
    return '/'.join('%s:%s' % (_printable(e.type), repr(e.name)
                               if e.HasField('name') else e.id)
                    for e in reference.path.element)


def summarize(path):
    """What a datastore file holds, as ``lovely-gae inspect --json``
    prints it: ``{'entities': n, 'app_ids': [the keys' app ids],
    'namespaces': [{'namespace': ns, 'kinds':
    [{'kind', 'entities', 'first_key', 'last_key'}]}]}``, sorted, keys in
    the datastore's order as ``key_text`` writes them. Records are parsed,
    never unpickled; at most ``MAX_KINDS`` kinds are tracked, else
    ``BadDatastoreFile``."""
    found = {}  # (namespace, kind): [count, first, first key, last, key]
    total, apps = 0, set()
    for total, entity in enumerate(_read(path), 1):
        reference = entity.key
        apps.add(reference.app)
        group = (reference.name_space, reference.path.element[-1].type)
        order = sort_key(reference)
        seen = found.get(group)
        if seen is None:
            if len(found) >= MAX_KINDS:
                raise BadDatastoreFile('holds more than %d kinds'
                                       % MAX_KINDS, path, total)
            found[group] = [1, order, reference, order, reference]
            continue
        seen[0] += 1
        if order < seen[1]:
            seen[1:3] = order, reference
        elif order > seen[3]:
            seen[3:5] = order, reference
    namespaces = {}
    for (namespace, kind), (count, _, first, _, last) in sorted(
            found.items()):
        namespaces.setdefault(namespace, []).append({
            'kind': _printable(kind), 'entities': count,
            'first_key': key_text(first), 'last_key': key_text(last)})
    return {'entities': total, 'app_ids': sorted(map(_printable, apps)),
            'namespaces': [{'namespace': namespace, 'kinds': kinds}
                           for namespace, kinds in namespaces.items()]}
