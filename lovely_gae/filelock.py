"""The lock beside a datastore file (``<file>.lock``): one writer, or
readers, at a time, each process saying who it is to those it keeps out."""
import contextlib
import errno
import fcntl
import json
import os

from . import defaults
from .exceptions import DatastoreFileError, DatastoreLocked

__all__ = ['FileLock']


class FileLock:
    """An OS lock on ``<path>.lock``: shared for readers, else exclusive.

    The holder writes its pid and command into the file, so that a process
    it keeps out can say who holds it. The OS drops the lock when the
    process ends, however it ends: no lock outlives its holder. A reader
    where this user may not write (read-only media, another user's
    directory) shares a lock file it can only read, or goes without one
    where there is none: a save replaces the file whole, at once, so what
    it reads is whole all the same.
    """

    def __init__(self, path, exclusive, command=None):
        self.path, self.exclusive = path, exclusive
        self.info = {'pid': os.getpid(), 'command': command}
        self.lock = path + defaults.LOCK_SUFFIX
        while True:
            self.fd = self._open()
            if self.fd is None:
                return  # a reader where it may not make one: no lock
            try:
                try:
                    fcntl.flock(self.fd, fcntl.LOCK_NB | (
                        fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH))
                except BlockingIOError:
                    raise DatastoreLocked(path, self._holder()) from None
                if self._current():
                    break
            except BaseException:
                os.close(self.fd)
                raise
            os.close(self.fd)  # its holder removed it meanwhile: anew
        self.note()

    def _open(self):
        """The lock file, open; for a reader where this user may not
        write, open to read (a shared lock needs no more), or None if
        there is none to open."""
        # No symlinks: the file is truncated, so it must be our own.
        try:
            return os.open(self.lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW,
                           0o644)
        except OSError as error:  # ELOOP or EISDIR say it badly
            if not self.exclusive and error.errno in (errno.EROFS,
                                                      errno.EACCES):
                try:
                    return os.open(self.lock, os.O_RDONLY | os.O_NOFOLLOW)
                except FileNotFoundError:
                    return None
            what = ('symbolic link' if os.path.islink(self.lock) else
                    'directory' if os.path.isdir(self.lock) else None)
            if what is None:
                raise
            raise DatastoreFileError(self.path, 'its lock file %s is a %s, '
                                     'not a file; remove it'
                                     % (self.lock, what)) from error

    def _current(self):
        """Whether the file locked still has the name: a holder removes it
        when done with no datastore file beside it (``release``)."""
        try:
            named = os.lstat(self.lock)
        except FileNotFoundError:
            return False
        locked = os.fstat(self.fd)
        return (named.st_dev, named.st_ino) == (locked.st_dev, locked.st_ino)

    def note(self, **info):
        """Record ``info`` (``url``) beside the pid and command."""
        self.info.update(info)
        if self.fd is None:
            return
        data = json.dumps(self.info).encode()
        with contextlib.suppress(OSError):  # a word for others, no more
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, data, 0)

    def _holder(self):
        """What the holder recorded, each field checked; {} if unreadable."""
        try:
            info = json.loads(os.pread(self.fd, 4096, 0))
        except ValueError:
            return {}
        if not isinstance(info, dict):
            return {}

        def text(value):
            return (value if isinstance(value, str) and len(value) < 200
                    and value.isprintable() else None)
        pid = info.get('pid')
        return {'pid': pid if type(pid) is int and pid > 0 else None,
                'command': text(info.get('command')),
                'url': text(info.get('url'))}

    def release(self, remove=False):
        """Let go; with ``remove`` an exclusive holder removes the file
        first (beside no datastore file, it would be left for nothing)."""
        if self.fd is None:
            return
        if self.exclusive:  # no word of a holder that is gone
            with contextlib.suppress(OSError):
                if remove:
                    os.unlink(self.lock)
                else:
                    os.ftruncate(self.fd, 0)
        os.close(self.fd)
