"""The library's errors: one root, specific subclasses that carry their data."""

__all__ = [
    'LovelyGaeError', 'InvalidInput', 'TaskError', 'SnapshotError',
    'EmptyKind', 'MaskUnmatched', 'UnknownCodec', 'SnapshotNotFound',
    'SnapshotNotFinished', 'RestoreNotFound',
    'RangeCorrupted', 'SnapshotIncomplete', 'BadManifest', 'BadEntity',
    'BadStoredRange', 'BadDatastoreFile', 'NotSerializable',
    'BadSerializedText', 'UnsafePath', 'RestoreRunning', 'SnapshotInUse',
    'OutFileExists', 'DownloadError', 'AccessDenied', 'DatastoreFileError',
    'DatastoreLocked',
]


class LovelyGaeError(Exception):
    """Root of every error raised by lovely_gae."""


class InvalidInput(LovelyGaeError, ValueError):
    """A caller passed a value the library cannot use (kind, batchsize, ...)."""

    def __init__(self, name, value, reason):
        self.name, self.value, self.reason = name, value, reason
        super().__init__('invalid %s %r: %s' % (name, value, reason))


class EmptyKind(InvalidInput):
    """A kind to snapshot has no entities: a typo, or another namespace
    (``elsewhere``: namespaces where it has some, if any were found)."""

    def __init__(self, kind, namespace, app, elsewhere=()):
        self.kind, self.namespace, self.app = kind, namespace, app
        self.elsewhere = list(elsewhere)
        LovelyGaeError.__init__(
            self, 'kind %r has no entities in namespace %r of app %s%s'
            % (kind, namespace, app, ' (it has some in namespace %s)'
               % ', '.join(map(repr, elsewhere)) if elsewhere else ''))
        self.name, self.value = 'kind', kind
        self.reason = 'has no entities'


class MaskUnmatched(InvalidInput):
    """Masks that matched no property of any entity written: a typo would
    leave the data it meant in the clear, so nothing is written.

    ``unmatched_masks`` are the names; ``suggestions`` maps a name to the
    property written that it most looks like, where one does;
    ``properties`` are (some of) the properties written.
    """

    def __init__(self, names, suggestions, properties):
        self.unmatched_masks = list(names)
        self.suggestions, self.properties = suggestions, list(properties)
        if not suggestions:
            hint = 'properties written: %s' % (
                ', '.join(properties) or 'none')
        elif len(suggestions) == 1 and len(names) == 1:
            hint = 'did you mean %s?' % suggestions[names[0]]
        else:
            hint = 'did you mean %s?' % ', '.join(
                '%s for %s' % (suggestions[name], name)
                for name in names if name in suggestions)
        LovelyGaeError.__init__(
            self, '%s %s matched no property, so nothing was written (%s)'
            % ('mask' if len(names) == 1 else 'masks', ', '.join(names),
               hint))
        self.name, self.value = 'mask', ', '.join(names)
        self.reason = 'matched no property'


class UnknownCodec(InvalidInput):
    """A codec ``snapshot.storage.CODECS`` does not know."""

    def __init__(self, codec, known):
        self.codec = codec
        super().__init__('codec', codec, 'unknown (known: %s)'
                         % ', '.join(sorted(known)))


class TaskError(LovelyGaeError):
    """A task cannot be stored or run (unknown function, bad arguments)."""


class NotYet(TaskError):
    """A task ran before what it needs was stored: it is tried again."""


class SnapshotError(LovelyGaeError):
    """Something is wrong with one snapshot."""

    def __init__(self, snapshot_id, message):
        self.snapshot_id = snapshot_id
        super().__init__(message)


class SnapshotNotFound(SnapshotError, LookupError):
    def __init__(self, snapshot_id):
        super().__init__(snapshot_id, 'no snapshot with id %r' % (snapshot_id,))


class RestoreNotFound(SnapshotError, LookupError):
    """No restore (or dry run) of this id is one of the snapshot's."""

    def __init__(self, snapshot_id, restore_id):
        self.restore_id = restore_id
        super().__init__(snapshot_id, 'no restore %s of snapshot %s'
                         % (restore_id, snapshot_id))


class SnapshotNotFinished(SnapshotError):
    def __init__(self, snapshot_id, status):
        self.status = status
        super().__init__(
            snapshot_id,
            'snapshot %s is %s, not finished' % (snapshot_id, status))


class RangeCorrupted(SnapshotError):
    """A stored range does not match what was recorded when it was written."""

    def __init__(self, snapshot_id, range_name, reason):
        self.range_name, self.reason = range_name, reason
        super().__init__(snapshot_id, 'range %s: %s' % (range_name, reason))


class RestoreRunning(LovelyGaeError):
    """A kind is being restored already: one restore of a kind at a time."""

    def __init__(self, kind, namespace, snapshot_id, restore_id):
        self.kind, self.namespace = kind, namespace
        self.snapshot_id, self.restore_id = snapshot_id, restore_id
        super().__init__(
            'kind %r of namespace %r is being restored from snapshot %s '
            '(restore %s); wait until it has ended' % (
                kind, namespace, snapshot_id, restore_id))


class SnapshotInUse(SnapshotError):
    """A snapshot cannot be deleted while a restore of it runs."""

    def __init__(self, snapshot_id, restore_id):
        self.restore_id = restore_id
        super().__init__(snapshot_id, 'snapshot %s is being restored '
                         '(restore %s); delete it once the restore has ended'
                         % (snapshot_id, restore_id))


class SnapshotIncomplete(SnapshotError):
    """A snapshot's ranges do not add up to what it recorded of itself."""

    def __init__(self, snapshot_id, reason):
        self.reason = reason
        super().__init__(snapshot_id, 'snapshot %s is incomplete: %s'
                         % (snapshot_id, reason))


class BadManifest(SnapshotError):
    """An app's manifest of a snapshot that a download cannot trust."""

    def __init__(self, snapshot_id, reason):
        self.reason = reason
        super().__init__(snapshot_id, 'manifest of snapshot %s: %s'
                         % (snapshot_id, reason))


class BadEntity(LovelyGaeError, ValueError):
    """An entity from a file or the network that may not be put as it is.

    ``path`` and ``record`` (its number, from 1) say where, for an entity
    of a file.
    """

    def __init__(self, reason, path=None, record=None):
        self.reason, self.path, self.record = reason, path, record
        super().__init__(reason if path is None else '%s: entity %d: %s'
                         % (path, record, reason))


class BadStoredRange(LovelyGaeError, ValueError):
    """The stored bytes of a range (or of an upload body) cannot be read.

    ``record`` is the number of the record (from 1) being read when it
    went wrong.
    """

    def __init__(self, reason, codec, record):
        self.reason, self.codec, self.record = reason, codec, record
        super().__init__(reason)


class BadDatastoreFile(LovelyGaeError, ValueError):
    """Bytes that are no datastore file (``snapshot.devfile``), or a
    damaged one: ``PATH: reason``, the file named once.

    ``path`` is None where only an open file was given (the line is then
    the reason alone); ``record`` is the number of the entity (from 1)
    being read when it went wrong.
    """

    def __init__(self, reason, path=None, record=None):
        self.reason, self.path, self.record = reason, path, record
        super().__init__(reason if path is None else '%s: %s'
                         % (path, reason))


class NotSerializable(LovelyGaeError, TypeError):
    """A value the serializer cannot store: it takes JSON, datastore keys,
    datetimes and bytes."""

    def __init__(self, value):
        self.type_name = type(value).__name__
        super().__init__('cannot serialize %s' % self.type_name)


class BadSerializedText(LovelyGaeError, ValueError):
    """Stored text the serializer cannot read back."""

    def __init__(self, reason):
        self.reason = reason
        super().__init__('serialized text %s' % reason)


class UnsafePath(LovelyGaeError):
    """A path a download would write to is not safe to use."""

    def __init__(self, path, reason):
        self.path, self.reason = path, reason
        super().__init__('%s %s; remove it' % (path, reason))


class OutFileExists(LovelyGaeError, RuntimeError):
    """The seed's contract: a download never overwrites a file."""

    def __init__(self, path):
        self.path = path
        super().__init__("Out file exists '%s'" % path)


class DownloadError(LovelyGaeError):
    """A remote call failed for good (after its retries)."""


class AccessDenied(LovelyGaeError):
    """The server refused the request: ``status`` 401 (no token) or 403."""

    def __init__(self, reason, status):
        self.reason, self.status = reason, status
        super().__init__('%s (HTTP %d)' % (reason, status))


class DatastoreFileError(LovelyGaeError):
    """A local datastore file cannot be read or saved."""

    def __init__(self, path, reason):
        self.path, self.reason = path, reason
        super().__init__('datastore file %s: %s' % (path, reason))


class DatastoreLocked(LovelyGaeError):
    """Another process works on the local datastore file.

    ``holder`` is what it recorded: ``pid``, ``command`` and, for
    ``lovely-gae serve``, the ``url`` it serves.
    """

    def __init__(self, path, holder):
        self.path, self.holder = path, holder
        who = holder.get('command') or 'another process'
        if holder.get('pid'):
            who += ' (pid %d)' % holder['pid']
        if holder.get('url'):
            advice = 'reach it with --url %s' % holder['url']
        else:
            advice = 'try again when it has finished'
        super().__init__('datastore file %s is in use by %s: %s'
                         % (path, who, advice))
