"""The stored record of a restore or of its dry run, and its statuses."""
import enum

from google.appengine.ext import db

from .. import completion
from ..base import JsonProperty, LibraryModel
from . import names

__all__ = ['RestoreStatus', 'Restore']


class RestoreStatus(str, enum.Enum):
    CHECKING = 'checking'
    RUNNING = 'running'
    FINISHED = 'finished'
    ERROR = 'error'


class Restore(LibraryModel):
    """One restore of some kinds of a snapshot (key name: its id).

    It checks every range first (``checking``), then puts them back
    (``running``); its tasks' ``completion`` jobs count what is done.
    """

    snapshot_id = db.IntegerProperty()  # to find them when it is deleted
    namespace = db.StringProperty(indexed=False)
    kinds = db.StringListProperty(indexed=False)
    # [[kind's index in ``kinds``, first position, ranges], ...]: the spans
    # of the ranges it puts back (a kind has one a shard).
    spans = JsonProperty(default=None)
    # Ranges one writing task puts back at most.
    per_task = db.IntegerProperty(default=1, indexed=False)
    status = db.StringProperty(default=RestoreStatus.CHECKING.value,
                               indexed=False)
    # A dry run: it writes nothing; ``plan`` counts what it would do.
    dry_run = db.BooleanProperty(default=False, indexed=False)
    plan = JsonProperty()
    error = db.TextProperty()
    entities = db.IntegerProperty(default=0, indexed=False)
    deleted = db.IntegerProperty(default=0, indexed=False)
    created = db.DateTimeProperty(auto_now_add=True, indexed=False)
    finished = db.DateTimeProperty(indexed=False)

    @classmethod
    def kind(cls):
        return 'LovelyGaeRestore'

    @property
    def id(self):
        return self.key().name()

    def job(self, phase):
        """The ``completion`` job of a phase: ``check`` or ``write``."""
        return names.restore_job(self.id, phase)

    def ranges_total(self):
        return sum(count for _, _, count in self.spans)

    def ranges_done(self):
        if self.status == RestoreStatus.FINISHED.value:
            return self.ranges_total()
        if self.status == RestoreStatus.CHECKING.value:
            return 0
        job = self.job('plan' if self.dry_run else 'write')
        return completion.tally(job).get('ranges', 0)

    def to_dict(self):
        found = {'id': self.id, 'status': self.status, 'kinds': self.kinds,
                 'ranges_done': self.ranges_done(),
                 'ranges_total': self.ranges_total(),
                 'entities': self.entities, 'deleted': self.deleted,
                 'error': self.error}
        if self.dry_run:
            found['plan'] = self.plan if self.plan or (
                self.status == RestoreStatus.FINISHED.value) else None
        return found
