"""One waiting rule for every client: until the work ends, or a timeout.

A snapshot, a restore and a restore's dry run run as tasks. ``wait`` asks
the client for the snapshot until the work has finished or failed,
telling ``progress`` how far it is, and lets the client work or sleep in
between (``client.pause``): the local client runs the tasks itself, the
remote one waits for the app's. A wait that runs out raises
``StillWorking``, whose one line says so.
"""
import time

from ..exceptions import InvalidInput, SnapshotError

__all__ = ['wait', 'work_of', 'StillWorking', 'WORKS', 'ENDED']

#: What can be waited for: the snapshot, its latest restore, its dry run.
WORKS = ('snapshot', 'restore', 'plan')

#: The statuses of work that has ended.
ENDED = ('finished', 'error')

_NAMES = {'snapshot': 'snapshot %s', 'restore': 'restore of snapshot %s',
          'plan': 'dry run of snapshot %s'}

# How a status reads in "snapshot 7 still ...".
_DOING = {'started': 'waiting to start', None: 'waiting to start'}


class StillWorking(SnapshotError):
    """A wait ran out before the work ended."""

    def __init__(self, snapshot_id, work, status, seconds):
        if not (status is None or isinstance(status, str)):
            status = repr(status)[:40]  # an app's answer, of any shape
        self.work, self.status, self.seconds = work, status, seconds
        super().__init__(snapshot_id, '%s still %s after %s s' % (
            _NAMES[work] % snapshot_id, _DOING.get(status, status),
            '%g' % seconds))


def work_of(info, work):
    """The part of a snapshot's data (``Snapshot.to_dict()``) that says how
    ``work`` goes: a dict with ``status``, ``ranges_done`` and
    ``ranges_total``; None if there is none (no restore yet)."""
    if work == 'snapshot':
        return dict(info['progress'], status=info['status'])
    return info.get(work)


def wait(client, snapshot_id, work='snapshot', timeout=None, progress=None,
         clock=time.monotonic):
    """The snapshot's data once ``work`` (``WORKS``) has ended.

    ``timeout`` (seconds; None: no end) bounds the wait; ``progress(event,
    **info)`` is told ``work`` (``name``, ``status``, ``done``, ``total``)
    each time the client is asked, and ``work_end``.
    """
    if work not in WORKS:
        raise InvalidInput('work', work, 'must be one of %s'
                           % ', '.join(WORKS))
    started = clock()
    name = _NAMES[work] % snapshot_id
    try:
        while True:
            info = client.get_snapshot(snapshot_id)
            found = work_of(info, work) or {}
            status = found.get('status')
            if progress:
                progress('work', name=name, status=status,
                         done=found.get('ranges_done') or 0,
                         total=found.get('ranges_total'))
            if status in ENDED:
                return info
            waited = clock() - started
            if timeout is not None and waited >= timeout:
                raise StillWorking(snapshot_id, work, status, timeout)
            client.pause(client.poll_seconds if timeout is None
                         else min(client.poll_seconds, timeout - waited))
    finally:
        if progress:
            progress('work_end', name=name)
