"""``python -m benchmarks``: issue 5's measurements, a table of ratios.

Examples::

    python -m benchmarks                      # 10,000, 50,000 and 200,000
    python -m benchmarks --size 10000 --codecs --output benchmarks/RESULTS.md
    python -m benchmarks --size 2000 --smoke  # CI: tests/test_benchmarks.py
    python -m benchmarks --simulate           # issue 11: see simmain
    python -m benchmarks --startup            # issue 13: lovely-gae --help
"""
import argparse
import json
import shlex
import shutil
import sys
import tempfile
import time
import traceback

from . import (codec_choice, data, measure, report, simmain, simreport,
               startup)

DEFAULT_SIZES = (10000, 50000, 200000)
SMOKE_SIZE = 2000
SMOKE_BUDGET = 120.0
SMOKE_TASKS = 200
_ORDER = ('snapshot', 'restore', 'download', 'queue overhead', 'scaling',
          'memory', 'size')


def _sizes(values):
    sizes = []
    for value in values or ():
        for part in value.split(','):
            if part.strip():
                size = int(part.strip().replace('_', ''))
                if size < 1:
                    raise argparse.ArgumentTypeError('sizes must be >= 1')
                sizes.append(size)
    return sorted(set(sizes))


def build_parser():
    parser = argparse.ArgumentParser(
        prog='python -m benchmarks',
        description='Snapshot, restore and download of lovely_gae against '
                    'the datastore\'s own floor, on the SDK\'s datastore '
                    'stub (issue 5). Prints a table of ratios.')
    parser.add_argument('--size', action='append', metavar='N',
                        help='entities (repeatable or a comma list; '
                             'default: %s)'
                             % ','.join(map(str, DEFAULT_SIZES)))
    parser.add_argument('--json', action='store_true',
                        help='print the results as JSON on stdout')
    parser.add_argument('--smoke', action='store_true',
                        help='one quick pass at a small size (default %d), '
                             'no RESULTS.md: checks that everything runs'
                             % SMOKE_SIZE)
    parser.add_argument('--codecs', action='store_true',
                        help='also compare bz2, zlib, lzma and none on our '
                             'stored format, at the smallest size')
    parser.add_argument('--output', metavar='PATH',
                        help='where RESULTS.md goes (default: '
                             'benchmarks/RESULTS.md, written on runs of '
                             'the default sizes; given, on any run but '
                             '--smoke)')
    parser.add_argument('--budget', type=float, default=900.0,
                        metavar='SECONDS',
                        help='time one side of one measurement may take '
                             'before it stops and is extrapolated '
                             '(default: %(default).0f)')
    parser.add_argument('--setup-budget', type=float, metavar='SECONDS',
                        help='time an over-budget snapshot may go on, '
                             'untimed, so that download and restore have '
                             'it to measure (default: 3 x --budget)')
    parser.add_argument('--repeats', type=int, metavar='R',
                        help='runs per side (default: 3 up to 20,000 '
                             'entities, else 1; the median counts)')
    parser.add_argument('--tasks', type=int, default=1000, metavar='N',
                        help='tasks of the queue-overhead measurement '
                             '(default: %(default)s)')
    parser.add_argument('--startup', action='store_true',
                        help='only time lovely-gae --help (and --version, '
                             'download --help, and --url URL list against a '
                             'stand-in app) in processes of their own, '
                             'against python -c pass (target: under %.1f s, '
                             '%.1f s with --url; R runs each, default 5); '
                             'writes no RESULTS.md'
                             % (startup.TARGET, startup.URL_TARGET))
    simmain.add_arguments(parser)
    return parser


class _Log:
    def __init__(self):
        self.started = time.monotonic()

    def __call__(self, text):
        print('[%7.1f s] %s' % (time.monotonic() - self.started, text),
              file=sys.stderr, flush=True)


def run(args, log):
    """Run every measurement; returns the result that is printed and saved."""
    sizes = _sizes(args.size) or ([SMOKE_SIZE] if args.smoke
                                  else list(DEFAULT_SIZES))
    # Scaling needs two sizes: a run of one adds a fifth of it.
    extra = [max(400, sizes[0] // 5)] if len(sizes) == 1 else []
    budget = min(args.budget, SMOKE_BUDGET) if args.smoke else args.budget
    repeats = 1 if args.smoke else args.repeats
    tasks = min(args.tasks, SMOKE_TASKS) if args.smoke else args.tasks
    workdir = tempfile.mkdtemp(prefix='lovely-gae-bench-')
    setup_budget = (3 * budget if args.setup_budget is None
                    else args.setup_budget)
    ctx = measure.Context(budget, setup_budget, workdir, repeats, log)
    rows, errors, skipped, codecs = [], [], [], []

    def attempt(label, func, *func_args):
        try:
            return func(*func_args)
        except Exception as exc:
            log('%s FAILED:\n%s' % (label, traceback.format_exc()))
            errors.append((label, '%s: %s' % (type(exc).__name__, exc)))
            return None

    with data.testbed():
        mean = data.mean_size(max(sizes + extra))
    log('kind %s: six properties %s, mean encoded size %.1f bytes' % (
        data.KIND, ', '.join(data.PROPERTIES), mean))
    try:
        for size in sorted(sizes + extra):
            log('--- %d entities ---' % size)
            found = attempt('snapshot %d' % size, measure.snapshot, ctx, size)
            if found is None:
                continue
            new_rows, info = found
            rows += new_rows
            if info is None:
                skipped.append(('%d' % size, 'no finished snapshot within '
                                'the budgets: download, memory and restore '
                                'not measured'))
                continue
            if size in sizes:
                for name in ('download', 'memory'):
                    rows += attempt('%s %d' % (name, size),
                                    getattr(measure, name), ctx, size,
                                    info) or []
            rows += attempt('restore %d' % size, measure.restore, ctx, size,
                            info) or []
        rows += attempt('queue overhead', measure.queue, ctx, tasks,
                        ctx.repeats(0)) or []
        rows += measure.scaling(rows)
        if args.codecs or args.smoke:
            codecs = attempt('codecs', codec_choice.measure, ctx,
                             sizes[0]) or []
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rows.sort(key=lambda r: (
        [i for i, name in enumerate(_ORDER)
         if r['measurement'].startswith(name)][0], r['size'] or 0))
    return {
        'machine': report.machine(),
        'setup': {'command': 'python -m benchmarks ' + ' '.join(
                      shlex.quote(a) for a in sys.argv[1:]),
                  'kind': data.KIND, 'properties': list(data.PROPERTIES),
                  'mean_encoded_bytes': mean, 'sizes': sizes,
                  'scaling_reference_sizes': extra, 'budget': budget,
                  'setup_budget': setup_budget,
                  'repeats': repeats or '3 up to 20,000 entities, else 1',
                  'queue_tasks': tasks},
        'rows': rows, 'codecs': codecs, 'errors': errors,
        'skipped': skipped}


def simulated(args, log):
    """``--simulate``: issue 11's measurements in virtual time."""
    result = simmain.run(args, log, _sizes(args.size))
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(simreport.text(result))
    full = (not args.size or _sizes(args.size) == list(
        simmain.DEFAULT_SIZES)) and not args.workers
    if not args.smoke and (args.output or full):
        path = args.output or report.default_path()
        simmain.write(path, result)
        log('wrote %s' % path)
    return 1 if simmain.failed(result) else 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    log = _Log()
    if args.startup:
        rows = startup.measure(args.repeats or 5)
        print(json.dumps(rows, indent=2) if args.json else startup.text(rows))
        return 0
    if args.simulate:
        return simulated(args, log)
    result = run(args, log)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print('Mean encoded entity: %.1f bytes' %
              result['setup']['mean_encoded_bytes'])
        print(report.table(result['rows']))
        for measurement, note in report.notes(result['rows']):
            print('  %s: %s' % (measurement, note))
        if result['codecs']:
            print()
            print(report.codec_table(result['codecs']))
        for label, reason in result['skipped']:
            print('SKIPPED %s: %s' % (label, reason))
        for label, error in result['errors']:
            print('ERROR %s: %s' % (label, error))
    full = not args.size or _sizes(args.size) == list(DEFAULT_SIZES)
    if not args.smoke and (args.output or full):
        path = args.output or report.default_path()
        report.write_results(path, result)
        log('wrote %s' % path)
    return 1 if result['errors'] else 0


if __name__ == '__main__':
    sys.exit(main())
