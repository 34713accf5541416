"""One waiting rule for every client: until the work ends, or a timeout.

A snapshot, a restore and a restore's dry run run as tasks. ``wait`` asks
the client for the snapshot, or for the restore by its id, until the work
has finished or failed, telling ``progress`` how far it is, and lets the
client work or sleep in between (``client.pause``): the local client runs
the tasks itself, the remote one waits for the app's. A wait that runs out
raises ``StillWorking``, whose one line says so.

A restore is followed by its id, not as the snapshot's latest: restores
of other kinds of one snapshot may run at once (``work.locks``), and the
latest may be another caller's.
"""
import time

from ..exceptions import InvalidInput, SnapshotError

__all__ = ['wait', 'StillWorking', 'WORKS', 'ENDED']

#: What can be waited for: the snapshot, a restore of it, a dry run.
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


def _look(client, snapshot_id, restore_id):
    """``(data, its progress)``: the snapshot's (``Snapshot.to_dict()``),
    or restore ``restore_id``'s (``Restore.to_dict()``), each a poll."""
    if restore_id is None:
        info = client.get_snapshot(snapshot_id)
        return info, dict(info['progress'], status=info['status'])
    info = client.get_restore(snapshot_id, restore_id)
    return info, info


def wait(client, snapshot_id, work='snapshot', restore_id=None,
         timeout=None, progress=None, clock=time.monotonic):
    """The data of ``work`` (``WORKS``) once it has ended: the snapshot's,
    or for a ``restore`` or a dry run (``plan``) restore ``restore_id``'s,
    the one the caller started (``calls.restore_snapshot`` names it).

    ``timeout`` (seconds; None: no end) bounds the wait; ``progress(event,
    **info)`` is told ``work`` (``name``, ``status``, ``done``, ``total``)
    each time the client is asked, and ``work_end``.
    """
    if work not in WORKS:
        raise InvalidInput('work', work, 'must be one of %s'
                           % ', '.join(WORKS))
    if (work == 'snapshot') != (restore_id is None):
        raise InvalidInput('restore_id', restore_id, 'must be given for a '
                           'restore or a dry run alone')
    started = clock()
    name = _NAMES[work] % snapshot_id
    try:
        while True:
            info, found = _look(client, snapshot_id, restore_id)
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
