"""The snapshot app on a real HTTP server: waitress, pure Python.

``ThreadedServer`` runs any WSGI app in a thread of its own (tests, docs,
``lovely-gae serve``). ``LocalServer`` is what ``lovely-gae serve`` runs:
the app on a local datastore file, with a worker thread that drains the
task queue about once a second and saves the file whenever the datastore
changed, and once more on shutdown.
"""
import logging
import select
import threading

import waitress
from waitress import wasyncore

from .exceptions import LovelyGaeError
from .local import save_datastore
from .snapshot import getApp
from .snapshot.access import configured_token, is_loopback_host
from .snapshot.web import MAX_BODY_BYTES

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


class ThreadedServer:
    """waitress serving ``app``; ``url`` is where, once it is created.

    The forwarding headers are left for the app to see (waitress would
    drop them), so that the access check can tell a proxied caller from
    one on this machine. ``adjustments`` go to waitress, over ``limits``.
    """

    #: What keeps callers, above all ones without the token, from tying the
    #: server up. waitress reads a whole request before the app sees it, so
    #: only its own limits refuse a huge body unread: at once by its
    #: ``Content-Length``, or as soon as a chunked one grows past the limit.
    #: Connections that send half a request and stall hold no thread; they
    #: are many before they keep anyone out, and closed after a while.
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

    def __init__(self, app, host='127.0.0.1', port=0, **adjustments):
        adjustments = dict(self.limits, **adjustments)
        adjustments.setdefault('clear_untrusted_proxy_headers', False)
        adjustments.setdefault('threads', 4)
        self.server = waitress.create_server(app, host=host, port=port,
                                             **adjustments)
        shown = '[%s]' % host if ':' in host else host
        self.url = 'http://%s:%s' % (shown, self.server.effective_port)
        self._thread = None

    def run(self):
        """Serve in this thread until Ctrl-C."""
        self.server.run()

    def start(self):
        """Serve in a thread of its own; ``stop`` ends it."""
        self._thread = threading.Thread(target=self.server.run,
                                        name='lovely-gae-http', daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout=10.0):
        if self._thread is not None:
            # The sockets are closed in the server's own loop, through its
            # trigger: closing them from here would race with that loop.
            try:
                self.server.trigger.pull_trigger(
                    lambda: wasyncore.close_all(self.server._map))
            except OSError:
                pass  # the loop woke for another reason, ran it, closed all
            self._thread.join(timeout)
            self._thread = None
        self.server.task_dispatcher.shutdown(timeout=timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()


class _Serialized:
    """Let one request at a time at the datastore stub, under ``lock``.

    The body is read under the lock too, since a download reads the
    datastore while it is sent; waitress buffers it before it goes out.
    """

    def __init__(self, app, lock):
        self.app, self.lock = app, lock

    def __call__(self, environ, start_response):
        with self.lock:
            app_iter = self.app(environ, start_response)
            try:
                return [b''.join(app_iter)]
            finally:
                if hasattr(app_iter, 'close'):
                    app_iter.close()


class LocalServer:
    """The snapshot app on the datastore ``stub`` serves from a local file.

    Off App Engine with no token configured the app serves only callers on
    this machine, so it must not listen on any other address without one.
    """

    #: Seconds between two rounds of the worker.
    interval = 1.0

    def __init__(self, stub, host='127.0.0.1', port=8080, token=None,
                 interval=None):
        self.token = configured_token(token)
        if self.token is None and not is_loopback_host(host):
            raise LovelyGaeError(
                'refusing to listen on %s without a token: without one only '
                'callers on this machine are served (set --token or $%s)'
                % (host, 'LOVELY_GAE_TOKEN'))
        self.stub = stub
        self.interval = interval or self.interval
        self.lock = threading.RLock()
        self.http = ThreadedServer(_Serialized(getApp(self.token), self.lock),
                                   host=host, port=port)
        self.url = self.http.url
        self._saved = stub._GetReadTimestamp()
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, daemon=True,
                                        name='lovely-gae-worker')

    def describe(self):
        who = ('callers with the bearer token' if self.token else
               'only callers on this machine (no token configured)')
        return ('Serving %s/lovely.gae/ for %s.\nA worker runs queued tasks '
                'every %g seconds and saves the datastore file after '
                'changes. Press Ctrl-C to stop.' % (self.url, who,
                                                    self.interval))

    def work_once(self):
        """Run due tasks for up to ``interval`` seconds; save if changed."""
        from .async_ import run_tasks
        with self.lock:
            try:
                ran = run_tasks(recursive=True, deadline=self.interval)
            except Exception:
                log.exception('the worker failed; trying again')
                ran = 0
            self.save_if_changed()
        return ran

    def save_if_changed(self):
        with self.lock:
            stamp = self.stub._GetReadTimestamp()
            if stamp != self._saved:
                save_datastore(self.stub)
                self._saved = stamp
                log.info('saved the datastore file')

    def _work(self):
        while not self._stop.wait(self.interval):
            self.work_once()

    def start(self):
        self._worker.start()
        self.http.start()
        return self

    def run(self):
        """Serve in this thread until Ctrl-C; then save and return."""
        self._worker.start()
        try:
            self.http.run()
        except KeyboardInterrupt:
            pass  # waitress stops on it, unless it comes between two polls
        finally:
            self._finish()

    def stop(self):
        self.http.stop()
        self._finish()

    def _finish(self):
        self._stop.set()
        if self._worker.is_alive():
            self._worker.join()
        self.save_if_changed()
