"""What ``lovely-gae serve`` runs: ``LocalServer``.

The snapshot app on a local datastore file, served by ``ThreadedServer``
(``webserver``), with worker threads that drain the task queue about once
a second and save the file whenever the datastore changed, and once more
on shutdown.
"""
import contextlib
import errno
import logging
import secrets
import signal
import threading

from webob import Request, exc

from . import defaults
from .async_ import run_tasks
from .exceptions import LovelyGaeError
from .snapshot import getApp
from .snapshot.app.handlers import HANDLER_TUPLES
from .snapshot.app.access import (check_access, configured_token,
                                  is_loopback_host, refuse)
from .webserver import ThreadedServer

__all__ = ['LocalServer']

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _closed_by_signals(http):
    """While inside, Ctrl-C and SIGTERM end ``http.run`` (in the main
    thread: only it may handle signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    closing = {number: signal.signal(number, lambda *_: http.close_soon())
               for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, previous in closing.items():
            signal.signal(number, previous)


class _SharedLock:
    """Held by many at once (requests, workers), or by a save alone.

    A save that waits goes first: no new holder comes in meanwhile.
    """

    def __init__(self):
        self._changed = threading.Condition()
        self._holders = self._saves_waiting = 0
        self._saving = False

    @contextlib.contextmanager
    def shared(self):
        with self._changed:
            while self._saving or self._saves_waiting:
                self._changed.wait()
            self._holders += 1
        try:
            yield
        finally:
            with self._changed:
                self._holders -= 1
                self._changed.notify_all()

    @contextlib.contextmanager
    def alone(self):
        with self._changed:
            self._saves_waiting += 1
            while self._saving or self._holders:
                self._changed.wait()
            self._saves_waiting -= 1
            self._saving = True
        try:
            yield
        finally:
            with self._changed:
                self._saving = False
                self._changed.notify_all()


class _Shared:
    """Let requests at the datastore while no save is writing its file.

    The body is read inside too, since a download reads the datastore
    while it is sent; waitress buffers it before it goes out.
    """

    def __init__(self, app, lock):
        self.app, self.lock = app, lock

    def __call__(self, environ, start_response):
        with self.lock.shared():
            app_iter = self.app(environ, start_response)
            try:
                return [b''.join(app_iter)]
            finally:
                if hasattr(app_iter, 'close'):
                    app_iter.close()


class LocalServer:
    """The snapshot app on a ``LocalDatastore``, with a worker that saves it.

    Callers need the bearer token: ``token``, else ``$LOVELY_GAE_TOKEN``,
    else one made up here (``describe`` shows it). With ``no_token`` there
    is none, and only callers on this machine are served, so the server
    must listen on a loopback address. App Engine's cron and queue headers
    open nothing here, wherever it runs.

    When the file cannot be saved (a full disk), requests that write are
    answered 503 until a save succeeds again; the worker tries each round.
    """

    #: Seconds between two rounds of the worker.
    interval = 1.0

    #: GET requests that write (cron calls these paths with GET): the
    #: routes whose handler writes on GET too (``web.allow``).
    writing_gets = frozenset(path for path, handler in HANDLER_TUPLES
                             if handler.writes_on_get)

    def __init__(self, datastore, host='127.0.0.1', port=8080, token=None,
                 no_token=False, interval=None, threads=1):
        token = configured_token(token)
        if no_token:
            if token is not None:
                raise LovelyGaeError(
                    'no token was asked for, yet one is set (--token or $%s)'
                    % defaults.TOKEN_ENV)
            if not is_loopback_host(host):
                raise LovelyGaeError(
                    'refusing to listen on %s without a token: without one '
                    'only callers on this machine are served' % host)
        self.generated_token = token is None and not no_token
        self.token = secrets.token_urlsafe(32) if self.generated_token \
            else token
        self.datastore = datastore
        self.interval = interval or self.interval
        self.save_error = None
        self.lock = _SharedLock()
        app = getApp(self.token, app_engine_headers=False)
        try:
            self.http = ThreadedServer(_Shared(self._gate(app), self.lock),
                                       host=host, port=port)
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise
            raise LovelyGaeError(
                'port %s on %s is in use: pick another with --port (or '
                '--port 0 for any free one)' % (port, host)) from error
        self.url = self.http.url
        datastore.note(url=self.url)  # for a command the file's lock keeps out
        self._stop = threading.Event()
        self._workers = [threading.Thread(target=self._work, daemon=True,
                                          name='lovely-gae-worker-%d' % n)
                         for n in range(1, max(1, threads) + 1)]

    def describe(self):
        """What a person starting the server needs to know, token included."""
        if self.token is None:
            who = 'only callers on this machine (no token)'
        else:
            who = 'callers with the bearer token'
        lines = ['Serving %s/lovely.gae/ for %s.' % (self.url, who)]
        if self.generated_token:
            lines += ['The token, made up for this run:',
                      '    export %s=%s' % (defaults.TOKEN_ENV, self.token),
                      '    lovely-gae --url %s list' % self.url]
        every = ('every second' if self.interval == 1 else
                 'every %g seconds' % self.interval)
        lines.append('%s queued tasks %s and save%s the datastore file '
                     'after changes. Press Ctrl-C to stop.' % (
                         'A worker runs' if len(self._workers) == 1 else
                         '%d workers run' % len(self._workers), every,
                         's' if len(self._workers) == 1 else ''))
        return '\n'.join(lines)

    def _gate(self, app):
        """``app``, but writes get a 503 while the file cannot be saved."""
        def gated(environ, start_response):
            error = self.save_error
            if error is None or not self._writes(environ):
                return app(environ, start_response)
            try:  # a caller who may not write learns nothing more
                check_access(Request(environ), self.token,
                             app_engine_headers=False)
            except exc.HTTPException as denied:
                return denied(environ, start_response)
            return refuse(exc.HTTPServiceUnavailable, '%s; nothing is '
                          'written until it can be saved' % error,
                          headers={'Retry-After': '10'})(environ,
                                                         start_response)
        return gated

    def _writes(self, environ):
        return (environ.get('REQUEST_METHOD') not in ('GET', 'HEAD')
                or environ.get('PATH_INFO') in self.writing_gets)

    def work_once(self):
        """Run due tasks for up to ``interval`` seconds; save if changed.

        While the file cannot be saved no task runs: each round only tries
        to save again.
        """
        ran = 0
        if self.save_error is None:
            with self.lock.shared():
                try:
                    ran = run_tasks(recursive=True, deadline=self.interval,
                                    shared=len(self._workers) > 1)
                except Exception:
                    log.exception('the worker failed; trying again')
        self.save_if_changed()
        return ran

    def save_if_changed(self):
        """Save the file if it changed; True if it is saved now."""
        with self.lock.alone():
            try:
                if self.datastore.save():
                    log.info('saved the datastore file')
            except LovelyGaeError as error:
                if self.save_error is None:
                    log.error('%s; answering writes with 503 until a save '
                              'succeeds', error)
                self.save_error = str(error)
                return False
            if self.save_error is not None:
                log.warning('saved the datastore file again; writes are '
                            'answered again')
                self.save_error = None
            return True

    def _work(self):
        while not self._stop.wait(self.interval):
            self.work_once()

    def start(self):
        for worker in self._workers:
            worker.start()
        self.http.start()
        return self

    def run(self):
        """Serve in this thread until Ctrl-C or SIGTERM; then save."""
        for worker in self._workers:
            worker.start()
        try:
            with _closed_by_signals(self.http):
                self.http.run()
        finally:
            self.stop()

    def stop(self):
        self.http.stop()
        self._finish()

    def _finish(self):
        self._stop.set()
        for worker in self._workers:
            if worker.is_alive():
                worker.join()
        if not self.save_if_changed():
            raise LovelyGaeError(self.save_error)
