"""``python -m benchmarks --simulate``: the options, the run, the report.

Examples::

    python -m benchmarks --simulate                       # 20,000 and 200,000
    python -m benchmarks --simulate --size 20000 --workers 1,16 \\
        --output benchmarks/RESULTS.md
    python -m benchmarks --simulate --smoke               # what CI runs
"""
import logging
import shlex
import shutil
import sys
import tempfile
import traceback

from . import data, report, simcheck, simreport, simstub, simulate

__all__ = ['DEFAULT_SIZES', 'add_arguments', 'run', 'failed', 'write']

DEFAULT_SIZES = (20000, 200000)
DEFAULT_WORKERS = (1, 4, 16, 64)
SMOKE_SIZE = 2000
SMOKE_WORKERS = (1, 4)
#: Workers of the polling runs in ``--workers-mode both``: issue 11's 16.
POLL_WORKERS = 16


def _workers(value):
    return sorted({int(part) for part in value.split(',') if part.strip()})


def add_arguments(parser):
    group = parser.add_argument_group('simulated production (--simulate)')
    group.add_argument('--simulate', action='store_true',
                       help='run snapshot and restore in virtual time on '
                            'the stub wrapped in a latency model, with K '
                            'workers, against an ideal range-parallel '
                            'reader (issue 11); sizes default to %s'
                            % ','.join(map(str, DEFAULT_SIZES)))
    group.add_argument('--workers', type=_workers, metavar='K,K,...',
                       help='worker counts (default: %s; --smoke: %s)' % (
                           ','.join(map(str, DEFAULT_WORKERS)),
                           ','.join(map(str, SMOKE_WORKERS))))
    group.add_argument('--workers-mode', choices=('push', 'poll', 'both'),
                       default='both',
                       help='push: tasks pushed to idle workers (production, '
                            'the headline); poll: workers loop run_tasks; '
                            'both (default): push at every K, and polling '
                            'at %d workers (or the largest K below) for the '
                            'idle-polling target' % POLL_WORKERS)
    group.add_argument('--ideal-read', choices=('query', 'get'),
                       default='query',
                       help='how the ideal reader reads a range: one '
                            'key-range query (default), or one batch get '
                            'of its keys, listed untimed (the same cost in '
                            'the model)')
    group.add_argument('--key-ms', type=float, metavar='MS',
                       help='virtual milliseconds a key returned by a '
                            'keys-only query costs (default: as an entity, '
                            '0.5: issue 11\'s model)')
    group.add_argument('--restore-max', type=int, metavar='N',
                       help='measure restores only at sizes up to N '
                            '(default: at every size)')
    group.add_argument('--no-memory', action='store_true',
                       help='skip the tracemalloc pass (peak memory per '
                            'task)')


def _quiet_rollbacks(record):
    """Drop the SDK's log of a rollback after a commit that collided: the
    stub has forgotten the transaction already (the counts keep it)."""
    return not record.getMessage().startswith('Exception sending Rollback')


def _notes(plan):
    return [
        'Latency model: %s. A run\'s time is its makespan: from '
        '`create_snapshot` (or `restore`) at 0 to the end of the last task.'
        % plan.latency.describe(),
        'Counting is done in the wrapper, call by call. Reads: a Get reads '
        'each key it answers, found or not (the stub, like the datastore, '
        'defers keys past 300 to a further call, which the SDK makes); a '
        'query reads each entity it returns, at least 1 per call; a '
        'keys-only query reads 1 per call and its keys are reported apart '
        '(keys returned), though each is charged 0.5 ms like an entity, as '
        'are skipped results. Writes: entities put plus keys deleted, '
        'counted when applied (inside a transaction at its commit); '
        'library = namespace `lovely_gae`.',
        'Collisions: commits that failed with a concurrency error (and '
        'other calls that did, inside transactions); rate = collisions / '
        '(commits + collisions); txn retries: transactions begun again '
        'by a thread after its collision.',
        'Workers, push mode (the headline): the library\'s pusher hands '
        'each stored task to the next idle worker (`async_.run_task`), '
        'at most K in flight; each `announce` costs the announcing thread '
        'one task-queue add (%g ms) per 100 names, and a name is available '
        'when that add completes (a countdown or retry backoff later). '
        'Cloud Tasks\' own dispatch delay is not modelled. Idle workers '
        'cost nothing.' % plan.latency.call_ms,
        'Workers, poll mode: no pusher; each worker loops '
        '`async_.run_tasks(max_tasks=%d, shared=True)` (a task a lease, '
        'picked at random, as the threads of `serve` and `lovely-gae '
        'worker` do) and sleeps %g s (virtual) after a round that ran '
        'nothing; those rounds\' calls are the idle polling.'
        % (plan.max_tasks, plan.interval),
        'The library is configured as docs/production.rst advises: '
        '`defaults.SHARDS` is the number of workers, as a queue\'s '
        '`max_concurrent_requests` would be.',
        'The library sees virtual time (`time.time`, `time.monotonic`, '
        '`time.sleep`, `base.utcnow`), so its time limits (a pass goes on '
        'in a new task after `PASS_SECONDS`) fall where they would in '
        'production, not where the stub\'s speed would put them.',
        'The ideal reader reads each range %s' % (
            'with one key-range query.' if plan.ideal_read == 'query' else
            'with one batch get of its keys (listed untimed), charged as '
            'the key-range query it stands for.'),
        'The stub answers key-range queries from the entities in the range '
        '(`lovely_gae/filestub.py`): the same answers, which the SDK\'s '
        'stub finds by evaluating the query on every entity of the kind '
        '(0.5 s a query at 20,000 entities, seconds at 200,000); only the '
        'machine\'s time changes, the stub\'s CPU is on no clock.',
        '`__scatter__` as production sets it: on 1 in %d entities '
        '(appengine-mapreduce\'s wiki, "ScatterPropertyImplementation"), '
        'where the SDK\'s stub sets it on 1 in 2; the stub keeps its own '
        'hash of the key and sets the property where that falls in '
        'production\'s share (`simstub.production_scatter`, checked '
        'below). So the sample a large kind is cut by returns, and is '
        'charged for, what production\'s would: at 20,000 entities about '
        '156 keys, not the 1,024 the stub would give. The library runs '
        'on the stub\'s share everywhere else (tests, the plain-stub '
        'benchmarks).' % simstub.SCATTER_SHARE,
        'Peak memory: tracemalloc in a separate pass at K=1, reset before '
        'each task; what a stub call allocates (and its transient peak) is '
        'booked to the stub, not the task. Protocol buffer messages (upb) '
        'live outside Python\'s allocator and are not seen, their Python '
        'wrappers are: growth with the number of entities held still shows.',
        'Runs are not repeatable to the call: a thread\'s CPU varies by a '
        'few per cent from run to run, which can reorder calls that race; '
        'collision counts move most (the snapshot at 20,000 entities and 64 '
        'workers made 3,045 calls in one run, 4,012 in another), times '
        'little (17.9 s and 18.7 s).',
        'Regression guard: the plain-stub table at the top of this file, '
        'measured by `python -m benchmarks`; `--simulate` does not re-run '
        'it.',
    ]


def run(args, log, sizes=None):
    """Every simulated measurement; returns the result that is reported."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the SDK's chatter about collisions
    root.addFilter(_quiet_rollbacks)
    sizes = sizes or ([SMOKE_SIZE] if args.smoke else list(DEFAULT_SIZES))
    workers = args.workers or list(SMOKE_WORKERS if args.smoke
                                   else DEFAULT_WORKERS)
    poll = ([k for k in workers if k <= POLL_WORKERS] or workers)[-1]
    workdir = tempfile.mkdtemp(prefix='lovely-gae-sim-')
    plan = simulate.Plan(sizes, workers, args.workers_mode, workdir, log,
                         poll_workers=poll, ideal_read=args.ideal_read,
                         latency=simstub.Latency(key_ms=args.key_ms),
                         memory=not args.no_memory,
                         restore_max=args.restore_max)
    rows, memory, errors = [], {}, []
    try:
        for size in sizes:
            log('--- %d entities (simulated) ---' % size)
            try:
                with simstub.production_scatter():
                    found, memory[size] = simulate.measure_size(plan, size)
                rows += found
            except Exception as exc:
                log('simulated %d FAILED:\n%s' % (size,
                                                  traceback.format_exc()))
                errors.append('%d: %s: %s' % (size, type(exc).__name__, exc))
        checks = simcheck.run_checks()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        root.setLevel(level)
        root.removeFilter(_quiet_rollbacks)
    mode = {'push': 'pushed tasks (production)',
            'poll': 'polling `run_tasks` loops',
            'both': 'pushed tasks (production, the headline), and polling '
                    'at %d workers' % poll}[args.workers_mode]
    return {
        'machine': report.machine(),
        'setup': {'command': 'python -m benchmarks ' + ' '.join(
                      shlex.quote(a) for a in sys.argv[1:]),
                  'kind': data.KIND, 'sizes': sizes, 'workers': workers,
                  'mode': args.workers_mode, 'workers_mode': mode,
                  'latency': plan.latency.describe(),
                  'ideal_read': plan.ideal_read},
        'rows': rows, 'memory': memory, 'checks': checks, 'errors': errors,
        'notes': _notes(plan)}


def failed(result):
    """Whether the instrument failed (not whether the library met targets)."""
    return bool(result['errors'] or any(r['problems'] for r in result['rows'])
                or not all(c['ok'] for c in result['checks']))


def write(path, result):
    report.write_section(path, simreport.HEADING, simreport.section(result))
