"""The stored record of a restore or of its dry run, and its statuses."""
import enum
import re

from google.appengine.ext import db

from .. import completion
from ..base import JsonProperty, LibraryModel
from ..exceptions import NotYet
from . import names
from .work import waves

__all__ = ['RestoreStatus', 'Restore', 'begun_key', 'checking', 'writing',
           'ranges_count', 'RESTORE_ID']

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
    (``running``); its tasks' ``completion`` jobs count what is done. The
    record is stored ``checking`` as it starts and is written again only
    as it ends (``finished``, ``error``): that its writing began is a
    marker of its own (``begun_key``), so that no task that read the
    record before it ended can store it back over its end. A small
    restore, checked as it starts, and a dry run are stored ``running``.
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

    def begun_key(self):
        return begun_key(self.snapshot_id, self.id)

    def ranges_total(self):
        return sum(count for _, _, count in self.spans)

    def by_kind(self, status=None):
        """``{kind: {'ranges_done': n, 'ranges_total': n}}``: how far the
        writing (or the dry run's counting) has come in each kind, the
        restore's ``status`` (as ``to_dict`` shows it) that."""
        status = status or self.status
        totals = [0] * len(self.kinds)
        for kind_index, _, count in self.spans:
            totals[kind_index] += count
        done = [0] * len(self.kinds)
        if status == RestoreStatus.FINISHED.value:
            done = totals
        elif status != RestoreStatus.CHECKING.value:
            phase = 'plan' if self.dry_run else 'write'
            tally = completion.tally(self.job(phase),
                                     waves.leaves(self, phase),
                                     waves.fanout(self, phase))
            done = [tally.get(ranges_count(index), 0)
                    for index in range(len(self.kinds))]
        return {kind: {'ranges_done': done[index],
                       'ranges_total': totals[index]}
                for index, kind in enumerate(self.kinds)}

    def to_dict(self, begun=None):
        """What users see of it: ``running`` once its writing began
        (``begun``: whether the marker of ``begun_key`` is there, if read
        with it; else it is read here)."""
        status = self.status
        if status == RestoreStatus.CHECKING.value:
            if begun is None:
                begun = db.get(self.begun_key()) is not None
            if begun:
                status = RestoreStatus.RUNNING.value
        by_kind = self.by_kind(status)
        found = {'id': self.id, 'status': status, 'kinds': self.kinds,
                 'ranges_done': sum(counts['ranges_done']
                                    for counts in by_kind.values()),
                 'ranges_total': self.ranges_total(), 'by_kind': by_kind,
                 'entities': self.entities, 'deleted': self.deleted,
                 'error': self.error}
        if self.dry_run:
            found['plan'] = self.plan if self.plan or (
                self.status == RestoreStatus.FINISHED.value) else None
        return found


def begun_key(snapshot_id, restore_id):
    """The key of the marker the task that sees every range of a restore
    checked stores with the writing's first tasks: there, the writing
    began. Named under its snapshot, as its markers (``Restore.job``)."""
    return completion.Done.key_for(
        names.restore_job(snapshot_id, restore_id, 'begun'))


def checking(record, begun):
    """Whether ``record`` (with its ``begun`` marker, read with it) is
    checking: not ended, and its writing not begun."""
    return (record is not None and begun is None
            and record.status == RestoreStatus.CHECKING.value)


def writing(record, begun=None):
    """Whether a task that puts back (or counts) for ``record`` goes on:
    the restore (or dry run) is running, or checking and ``begun`` (its
    marker that the writing began, read with it). Checking without it,
    the task came before the marker was stored after it
    (``restore._start_writing``): it raises, to be tried again."""
    if record is not None and record.status == RestoreStatus.CHECKING.value:
        if begun is None:
            raise NotYet('restore %s is not writing yet' % record.id)
        return True
    return record is not None and record.status == RestoreStatus.RUNNING.value


def ranges_count(kind_index):
    """The name a writing or counting task's ``completion`` counts give the
    ranges of the kind at ``kind_index`` it has done."""
    return '%d:ranges' % kind_index
