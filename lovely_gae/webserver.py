"""waitress serving any WSGI app in a thread of its own: ``ThreadedServer``.

Used by the tests, the docs, the demo and ``lovely-gae serve``. waitress
is pure Python; its limits are set here, so that callers without the
token cannot tie the server up.
"""
import logging
import select
import threading
import time

import waitress
from waitress import wasyncore
from waitress.channel import HTTPChannel

from .snapshot.app.web import MAX_BODY_BYTES

__all__ = ['ThreadedServer']

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
        channels = {}
        try:
            self.server = waitress.create_server(app, map=channels, host=host,
                                                 port=port, **adjustments)
        except OSError:  # a port in use: what waitress opened, closed
            for channel in list(channels.values()):
                channel.close()
            raise
        self.server.channel_class = _Channel
        self.server.header_seconds = header_seconds or self.header_seconds
        shown = '[%s]' % host if ':' in host else host
        self.url = 'http://%s:%s' % (shown, self.server.effective_port)
        self._thread = None
        self._closing = False
        self._ran = False  # run closes the sockets as its loop ends

    def run(self):
        """Serve in this thread until ``close_soon``.

        waitress's loop, a turn at a time, so that the flag ends it: a
        ``KeyboardInterrupt`` raised while the loop runs a thunk of its
        trigger is swallowed there (a bare ``except``), and serving went
        on after Ctrl-C.
        """
        server, adj = self.server, self.server.adj
        self._ran = True
        while server._map and not self._closing:
            server.asyncore.loop(timeout=adj.asyncore_loop_timeout,
                                 map=server._map,
                                 use_poll=adj.asyncore_use_poll, count=1)
        # The sockets are closed in the server's own loop: closing them
        # from another thread would race with it. The trigger stays open
        # until ``stop``: a worker thread that ends a request pulls it.
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
        if not self._ran:  # never served: nothing closed them
            self._close_all()
        self.server.task_dispatcher.shutdown(timeout=timeout)
        self.server.trigger.close()

    def _close_all(self):
        # A connection's handle_close, not close: it also wakes a worker
        # thread that waits for the connection's output to drain (a
        # caller that went away mid-answer), which would hold ``stop``
        # for its whole timeout.
        # The listening socket's own close closes the trigger too: a
        # worker thread still ending a request would then write to a
        # closed (or reused) descriptor. Only its socket goes here.
        for dispatcher in list(self.server._map.values()):
            if isinstance(dispatcher, HTTPChannel):
                dispatcher.handle_close()
            elif dispatcher is self.server:
                wasyncore.dispatcher.close(dispatcher)
            elif dispatcher is not self.server.trigger:
                dispatcher.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
