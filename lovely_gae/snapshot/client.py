"""Download a snapshot to a file a development datastore loads.

``download_snapshot`` reads the snapshot's stored ranges and writes
``<out_dir>/snapshot.<id>`` in the format of the SDK's ``DatastoreFileStub``.
The file is written under a temporary name and renamed when complete, so
a failure never leaves a partial file behind.
"""
import os
import sys
import time

from ..exceptions import OutFileExists, SnapshotNotFound
from . import api, devfile

__all__ = ['download_snapshot', 'SeedProgress']


class SeedProgress:
    """Progress as the seed's client printed it, one line per range."""

    def __init__(self, stream=None):
        self.stream = stream
        self.started = None

    def _print(self, line):
        print(line, file=self.stream or sys.stdout)

    def __call__(self, event, **info):
        if event == 'start':
            self.started = time.monotonic()
            self._print('Downloading snapshot: %d' % info['snapshot_id'])
        elif event == 'range':
            position, total = info['position'], info['total']
            done = position - 1
            # Before the first range there is no measurement: a second each.
            per_range = ((time.monotonic() - self.started) / done
                         if done else 1.0)
            self._print('Downloading %s pos: %d/%d remaining: %.1f seconds'
                        % (info['name'], position, total,
                           per_range * (total - done)))
        elif event == 'save':
            self._print('Saving to %s' % info['path'])


class BarProgress:
    """A ``tqdm`` bar of stored bytes, with rate and time left."""

    def __init__(self):
        self.bar = None

    def __call__(self, event, **info):
        from tqdm import tqdm
        if event == 'start':
            self.bar = tqdm(total=info['bytes'], unit='B', unit_scale=True,
                            desc='snapshot %d' % info['snapshot_id'])
        elif event == 'range':
            self.bar.set_postfix_str('range %d/%d' % (info['position'],
                                                      info['total']))
        elif event == 'range_done':
            self.bar.update(info['bytes'])
        elif event == 'save':
            self.bar.close()
            print('Saving to %s' % info['path'])


def _quiet(event, **info):
    pass


def progress_for(json_output=False, stream=None):
    """The progress a command line shows: a bar on a terminal, else lines."""
    stream = stream or sys.stdout
    if json_output:
        return _quiet
    if stream.isatty():
        return BarProgress()
    return SeedProgress(stream)


def out_path(out_dir, snapshot_id):
    path = os.path.join(out_dir, 'snapshot.%d' % snapshot_id)
    if os.path.exists(path):
        raise OutFileExists(path)
    return path


def download_snapshot(out_dir, snapshot_id=None, progress=None):
    """Write snapshot ``snapshot_id`` (default: the latest finished one).

    Returns the path of the file written. ``progress(event, **info)`` is
    told ``start``, each ``range`` and ``save``; by default it prints the
    seed's lines.
    """
    progress = progress or SeedProgress()
    if snapshot_id is None:
        snap = api.latest_snapshot()
        if snap is None:
            raise SnapshotNotFound("latest")
    else:
        snap = api.get_snapshot(snapshot_id)
    snap.check_finished()
    path = out_path(out_dir, snap.id)
    backups = snap.range_backups()
    progress('start', snapshot_id=snap.id, ranges=len(backups),
             bytes=sum(rb.size or 0 for rb in backups))
    fileobj, temp_path = devfile.temp_file(path)
    try:
        with fileobj:
            writer = devfile.DevFileWriter(fileobj)
            for position, rb in enumerate(backups, 1):
                progress('range', name=rb.name, position=position,
                         total=len(backups), bytes=rb.size or 0)
                for record in rb.iter_records():
                    writer.add(record)
                progress('range_done', name=rb.name, bytes=rb.size or 0)
            writer.close()
        progress('save', path=path)
        devfile.publish(temp_path, path)
    except BaseException:
        if os.path.exists(temp_path):
            os.unlink(temp_path)
        raise
    return path


def main(argv=None):
    """The seed's ``download_snapshot`` script: ``lovely-gae download``.

    ``download_snapshot [--datastore PATH ...] [ID] OUT_DIR``: the global
    options of ``lovely-gae`` go first, as they would there.
    """
    from ..cli import main as cli_main, split_global_options
    options, rest = split_global_options(
        list(sys.argv[1:] if argv is None else argv))
    return cli_main(options + ['download'] + rest)
