"""The snapshot app on a real HTTP server: waitress, pure Python.

``ThreadedServer`` runs any WSGI app in a thread of its own (tests, docs,
``lovely-gae serve``). ``LocalServer`` is what ``lovely-gae serve`` runs:
the app on a local datastore file, with a worker thread that drains the
task queue about once a second and saves the file whenever the datastore
changed, and once more on shutdown.
"""
import contextlib
import logging
import secrets
import select
import signal
import threading
import time

import waitress
from waitress.channel import HTTPChannel
from webob import Request, exc

from . import defaults
from .async_ import run_tasks
from .exceptions import LovelyGaeError
from .snapshot import getApp
from .snapshot.app.access import (check_access, configured_token,
                                  is_loopback_host, refuse)
from .snapshot.app.web import MAX_BODY_BYTES

__all__ = ['ThreadedServer', 'LocalServer']

log = logging.getLogger(__name__)


def _connection_limit():
    """As many connections as this process's file descriptors allow.

    Each connection may take three: its socket, and a temporary file for
    each of a large request and a large response.
    """
    try:
        import resource
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return 100  # waitress's own default
    if soft == resource.RLIM_INFINITY:
        soft = 4096
    return max(10, min(1000, (soft - 64) // 3))


class _Channel(HTTPChannel):
    """waitress's connection, closed when the request line and headers of
    a request take longer than its server's ``header_seconds`` to come.

    waitress's own ``channel_timeout`` counts from the last byte that came:
    a caller sending one now and then would hold the connection for ever.
    """

    _coming = None  # the request whose headers are coming in
    _since = 0.0  # the time its first bytes came

    def received(self, data):
        done = super().received(data)
        request = self.request  # what is left of a request not yet whole
        if request is None or request.headers_finished:
            self._coming = None
        elif request is not self._coming:
            self._coming, self._since = request, time.time()
        return done

    def readable(self):
        # Asked of every connection on each turn of the server's loop, in
        # its thread, as waitress's own clean-up does (``maintenance``).
        if (self._coming is not None and not self.requests
                and time.time() - self._since > self.server.header_seconds):
            log.debug('closing the connection of %s: no whole headers in '
                      '%g seconds', self.addr, self.server.header_seconds)
            self._coming = None
            self.will_close = True
        return super().readable()


class ThreadedServer:
    """waitress serving ``app``; ``url`` is where, once it is created.

    The forwarding headers are left for the app to see (waitress would
    drop them), so that the access check can tell a proxied caller from
    one on this machine. ``adjustments`` go to waitress, over ``limits``.
    """

    #: Seconds a request line and its headers may take to come in, in all:
    #: then the connection is closed, however busy it kept.
    header_seconds = 30.0

    #: What keeps callers, above all ones without the token, from tying the
    #: server up. waitress reads a whole request before the app sees it, so
    #: only its own limits refuse a huge body unread: at once by its
    #: ``Content-Length``, or as soon as a chunked one grows past the limit.
    #: Connections that send half a request and stall hold no thread; they
    #: are many before they keep anyone out, and closed after a while: when
    #: idle that long, or when their headers take ``header_seconds``.
    limits = dict(
        # waitress refuses a body of this size and more; the app takes
        # MAX_BODY_BYTES, and refuses less for the requests it knows.
        max_request_body_size=MAX_BODY_BYTES + 1,
        max_request_header_size=64 * 1024,
        connection_limit=_connection_limit(),
        channel_timeout=30,
        cleanup_interval=10,
        # select() fails on descriptors past 1024; poll() has no limit.
        asyncore_use_poll=hasattr(select, 'poll'),
    )

    def __init__(self, app, host='127.0.0.1', port=0, header_seconds=None,
                 **adjustments):
        adjustments = dict(self.limits, **adjustments)
        adjustments.setdefault('clear_untrusted_proxy_headers', False)
        adjustments.setdefault('threads', 4)
        self.server = waitress.create_server(app, host=host, port=port,
                                             **adjustments)
        self.server.channel_class = _Channel
        self.server.header_seconds = header_seconds or self.header_seconds
        shown = '[%s]' % host if ':' in host else host
        self.url = 'http://%s:%s' % (shown, self.server.effective_port)
        self._thread = None
        self._closing = False

    def run(self):
        """Serve in this thread until ``close_soon``.

        waitress's loop, a turn at a time, so that the flag ends it: a
        ``KeyboardInterrupt`` raised while the loop runs a thunk of its
        trigger is swallowed there (a bare ``except``), and serving went
        on after Ctrl-C.
        """
        server, adj = self.server, self.server.adj
        while server._map and not self._closing:
            server.asyncore.loop(timeout=adj.asyncore_loop_timeout,
                                 map=server._map,
                                 use_poll=adj.asyncore_use_poll, count=1)
        # The sockets are closed in the server's own loop: closing them
        # from another thread would race with it.
        self._close_all()

    def close_soon(self):
        """Make ``run`` return soon. Safe in a signal's handler: it takes
        no lock (the trigger's may be held by the loop it interrupted)."""
        self._closing = True
        try:
            self.server.trigger.pull_trigger()
        except OSError:
            pass  # closed already: the loop has ended

    def start(self):
        """Serve in a thread of its own; ``stop`` ends it."""
        self._thread = threading.Thread(target=self.run,
                                        name='lovely-gae-http', daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout=10.0):
        if self._thread is not None:
            self.close_soon()
            self._thread.join(timeout)
            self._thread = None
        self.server.task_dispatcher.shutdown(timeout=timeout)

    def _close_all(self):
        # A connection's handle_close, not close: it also wakes a worker
        # thread that waits for the connection's output to drain (a
        # caller that went away mid-answer), which would hold ``stop``
        # for its whole timeout.
        for dispatcher in list(self.server._map.values()):
            if isinstance(dispatcher, HTTPChannel):
                dispatcher.handle_close()
            else:
                dispatcher.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()


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

    #: GET requests that write: cron calls these paths with GET.
    writing_gets = ('/lovely.gae/snapshot.CreateSnapshotHandler',
                    '/lovely.gae/worker')

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
        self.http = ThreadedServer(_Shared(self._gate(app), self.lock),
                                   host=host, port=port)
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
            self.http.stop()
            self._finish()

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
