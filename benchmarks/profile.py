"""Profile our snapshot or restore with pyinstrument (installed by hand).

``python -m benchmarks.profile snapshot --size 10000 [--html out.html]``
prints where the time of ``create_snapshot`` plus its tasks (or of
``restore()`` plus its tasks) goes, on the benchmark's data. pyinstrument
is not a dependency: ``pip install pyinstrument`` first.
"""
import argparse
import os
import tempfile

from lovely_gae.snapshot import api

from . import data, timing

__all__ = ['main']


def _drain():
    timing.drain(timing.Budget(float('inf')))


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m benchmarks.profile')
    parser.add_argument('what', choices=('snapshot', 'restore'))
    parser.add_argument('--size', type=int, default=10000)
    parser.add_argument('--html', metavar='PATH',
                        help='also write pyinstrument\'s HTML report')
    args = parser.parse_args(argv)
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.001)
    with tempfile.TemporaryDirectory() as workdir:
        path = os.path.join(workdir, 'datastore')
        with data.testbed(path) as bed:
            data.fill(args.size)
            profiling = args.what == 'snapshot'
            if profiling:
                profiler.start()
            snapshot_id = api.create_snapshot([data.KIND]).id
            _drain()
            if profiling:
                profiler.stop()
            else:
                data.save(bed)
        if args.what == 'restore':
            with data.testbed(path):
                data.delete_all()
                profiler.start()
                api.get_snapshot(snapshot_id).restore()
                _drain()
                profiler.stop()
    print(profiler.output_text(unicode=True, color=False, show_all=False))
    if args.html:
        with open(args.html, 'w', encoding='utf-8') as out:
            out.write(profiler.output_html())


if __name__ == '__main__':
    main()
