"""Progress as a command line shows it: the seed's lines, throttled lines
in a log, a ``tqdm`` bar on a terminal (``progress_for``).

A progress is a callable ``progress(event, **info)``. A download tells
``resume`` (``kept`` of ``ranges`` already here, if any), ``start``, each
``range``, ``bytes`` as they come, and ``save``. Work that is
waited for (a snapshot, a restore, its dry run: ``waiting.wait``) is told as
``work`` (``name``, ``status``, ``done`` and ``total`` ranges) each time it
is looked at, and ``work_end``; an upload tells each ``batch`` (``name``,
``done`` and ``total`` entities).
"""
import sys
import time

from ..clitext import printable

__all__ = ['SeedProgress', 'LineProgress', 'BarProgress', 'quiet',
           'progress_for', 'loading_bar']


class SeedProgress:
    """Progress as the seed's client printed it, one line per range; none
    of work waited for."""

    def __init__(self, stream=None, clock=time.monotonic):
        self.stream = stream
        self.clock = clock
        self.started = None

    def _print(self, line):
        print(printable(line), file=self.stream or sys.stdout)

    def _remaining(self, done, total):
        """`` remaining: 4.0 seconds``, by the time ``done`` ranges took;
        before the first range there is no measurement: the seed's lines
        say a second each."""
        per_range = (self.clock() - self.started) / done if done else 1.0
        return ' remaining: %.1f seconds' % (per_range * (total - done))

    def __call__(self, event, **info):
        if event == 'resume':
            self._print(resuming(info))
        elif event == 'start':
            self.started = self.clock()
            self._print('Downloading snapshot: %d' % info['snapshot_id'])
        elif event == 'range':
            position, total = info['position'], info['total']
            self._print('Downloading %s pos: %d/%d%s' % (
                info['name'], position, total,
                self._remaining(position - 1, total)))
        elif event == 'save':
            self._print('Saving to %s' % info['path'])


def resuming(info):
    """``resuming: 27 of 89 ranges already here``."""
    return 'resuming: %d of %d ranges already here' % (info['kept'],
                                                       info['ranges'])


def _work_line(info):
    """``snapshot 7: storing, 3/10 ranges``."""
    total = info['total']
    return '%s: %s, %d/%s %s' % (info['name'], info['status'], info['done'],
                                 '?' if total is None else total,
                                 info['unit'])


def _as_work(event, info):
    """``(event, info)`` with an upload's ``batch`` told as ``work``."""
    if event == 'batch' and 'name' in info:
        return 'work', dict(info, status='uploading', unit='entities')
    if event == 'work':
        return event, dict(info, unit='ranges')
    return event, info


class LineProgress(SeedProgress):
    """The seed's lines, but a range's line only once per tenth of the
    ranges or per ``every`` seconds: short in a log, yet alive. Work waited
    for shows once it has gone on ``every`` seconds (work done sooner needs
    no word in a log), then as seldom as a download's ranges."""

    every = 10.0

    def __init__(self, stream=None, clock=time.monotonic):
        super().__init__(stream, clock)
        self.shown = None  # (position, time) of the last line shown
        self.work = None  # (name, done, time) of the last work line

    def _remaining(self, done, total):
        """Nothing until a range has been measured: the seed's guess of a
        second a range told a download of ten small ranges that took a
        tenth of a second that it had ten seconds to go."""
        return super()._remaining(done, total) if done else ''

    def _work(self, info):
        now, done, total = self.clock(), info['done'], info['total']
        last = self.work
        if last is None or last[0] != info['name']:
            self.work = last = (info['name'], None, now)
        if last[1] is None:  # nothing shown yet
            if now - last[2] < self.every:
                return
        elif not ((total and done * 10 // total > last[1] * 10 // total)
                  or now - last[2] >= self.every):
            return
        self.work = (info['name'], done, now)
        self._print(_work_line(info))

    def __call__(self, event, **info):
        event, info = _as_work(event, info)
        if event == 'work':
            self._work(info)
            return
        if event == 'start':
            self.shown = (0, self.clock())
        elif event == 'range':
            position, total = info['position'], info['total']
            now = self.clock()
            tenth = position * 10 // total if total else 0
            if not (tenth > self.shown[0] * 10 // (total or 1)
                    or now - self.shown[1] >= self.every):
                return
            self.shown = (position, now)
        super().__call__(event, **info)


class BarProgress:
    """A ``tqdm`` bar of stored bytes, with rate and time left."""

    def __init__(self):
        self.bar = None
        self.work_bar = None

    def _work(self, event, info):
        from tqdm import tqdm
        if event == 'work_end' or (info['unit'] == 'entities'
                                   and info['done'] >= info['total']):
            if self.work_bar is not None:
                self.work_bar.close()
                self.work_bar = None
            return
        bar = self.work_bar
        if bar is None:
            bar = self.work_bar = tqdm(total=info['total'],
                                       desc=printable(info['name']),
                                       unit=' ' + info['unit'])
        if bar.total != info['total']:
            bar.total = info['total']
        bar.n = info['done']
        # Refreshes the bar; the status is what an app said.
        bar.set_postfix_str(printable(info['status'] or ''))

    def __call__(self, event, **info):
        from tqdm import tqdm
        event, info = _as_work(event, info)
        if event in ('work', 'work_end'):
            self._work(event, info)
        elif event == 'resume':
            print(resuming(info))  # before the bar: the bar starts after
        elif event == 'start':
            self.bar = tqdm(total=info['bytes'], unit='B', unit_scale=True,
                            unit_divisor=1024,
                            desc='snapshot %d' % info['snapshot_id'])
        elif event == 'range':
            self.bar.set_postfix_str('range %d/%d' % (info['position'],
                                                      info['total']))
        elif event == 'bytes' and self.bar is not None:
            self.bar.update(info['bytes'])
        elif event == 'save':
            self.bar.close()
            print('Saving to %s' % info['path'])


def quiet(event, **info):
    """Progress that shows nothing."""


def progress_for(json_output=False, stream=None, clock=time.monotonic):
    """The progress a command line shows: a bar on a terminal, else a line
    per tenth or ten seconds (``LineProgress``, on ``clock``)."""
    stream = stream or sys.stdout
    if json_output:
        return quiet
    if stream.isatty():
        return BarProgress()
    return LineProgress(stream, clock)


def loading_bar(path, json_output=False, stream=None):
    """``progress(done, total)`` for loading the datastore file at
    ``path``: a ``tqdm`` bar of its bytes on a terminal (``stream``, by
    default stderr), gone once it is loaded; None elsewhere, where a load
    needs no word."""
    stream = stream or sys.stderr
    if json_output or not stream.isatty():
        return None
    bar = None

    def progress(done, total):
        nonlocal bar
        if bar is None:
            if done >= total:
                return  # loaded before a bar was needed
            from tqdm import tqdm
            bar = tqdm(total=total, unit='B', unit_scale=True,
                       unit_divisor=1024, leave=False, file=stream,
                       desc='loading %s' % printable(path))
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()
    return progress
