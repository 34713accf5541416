"""A snapshot's statuses, and which snapshots prune deletes by them.

Nothing of the SDK: ``lovely-gae --url URL prune`` asks about what
``prunable`` finds on the app's listing before it deletes.
"""
import enum

__all__ = ['Status', 'prunable']


class Status(str, enum.Enum):
    STARTED = 'started'
    STORING = 'storing'
    FINISHED = 'finished'
    ERROR = 'error'
    DELETING = 'deleting'


def prunable(snapshots, keep):
    """Ids of ``snapshots`` (``(id, status, entities)``, newest first) that
    ``api.prune(keep)`` deletes: finished ones that hold entities past the
    newest ``keep``, and failed or empty ones older than the oldest kept.
    An empty snapshot does not count: a run of them (a kind misspelt in
    cron, or an app that lost its data) never pushes out the newest that
    hold data."""
    kept, doomed = 0, []
    for snapshot_id, status, held in snapshots:
        if status == Status.FINISHED and held:
            if kept < keep:
                kept += 1
                continue
        elif status not in (Status.FINISHED, Status.ERROR) or kept < keep:
            continue
        doomed.append(snapshot_id)
    return doomed
