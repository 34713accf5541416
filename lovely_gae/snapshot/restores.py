"""The stored record of a restore or of its dry run, and its statuses."""
import enum
import re

from google.appengine.ext import db

from .. import completion
from ..base import JsonProperty, LibraryModel
from . import names

__all__ = ['RestoreStatus', 'Restore', 'ranges_count', 'RESTORE_ID']

#: A restore's id, as ``restore.new_record`` makes it: 32 hex digits.
RESTORE_ID = re.compile(r'[0-9a-f]{32}\Z')


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
    # Ranges one writing (or counting) task puts back at most, and one
    # checking task checks (``waves.per_task``).
    per_task = db.IntegerProperty(default=1, indexed=False)
    check_per_task = db.IntegerProperty(default=1, indexed=False)
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
        """The ``completion`` job of a phase: ``check``, ``write`` or
        (a dry run's) ``plan``."""
        return names.restore_job(self.snapshot_id, self.id, phase)

    def ranges_total(self):
        return sum(count for _, _, count in self.spans)

    def by_kind(self):
        """``{kind: {'ranges_done': n, 'ranges_total': n}}``: how far the
        writing (or the dry run's counting) has come in each kind."""
        totals = [0] * len(self.kinds)
        for kind_index, _, count in self.spans:
            totals[kind_index] += count
        done = [0] * len(self.kinds)
        if self.status == RestoreStatus.FINISHED.value:
            done = totals
        elif self.status != RestoreStatus.CHECKING.value:
            tally = completion.tally(self.job('plan' if self.dry_run
                                              else 'write'))
            done = [tally.get(ranges_count(index), 0)
                    for index in range(len(self.kinds))]
        return {kind: {'ranges_done': done[index],
                       'ranges_total': totals[index]}
                for index, kind in enumerate(self.kinds)}

    def to_dict(self):
        by_kind = self.by_kind()
        found = {'id': self.id, 'status': self.status, 'kinds': self.kinds,
                 'ranges_done': sum(counts['ranges_done']
                                    for counts in by_kind.values()),
                 'ranges_total': self.ranges_total(), 'by_kind': by_kind,
                 'entities': self.entities, 'deleted': self.deleted,
                 'error': self.error}
        if self.dry_run:
            found['plan'] = self.plan if self.plan or (
                self.status == RestoreStatus.FINISHED.value) else None
        return found


def ranges_count(kind_index):
    """The name a writing or counting task's ``completion`` counts give the
    ranges of the kind at ``kind_index`` it has done."""
    return '%d:ranges' % kind_index
