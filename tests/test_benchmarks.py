"""The benchmark still runs: its smoke mode, end to end.

The two runs are marked ``slow``: the default run leaves them out,
``.ci/run`` runs them (``pytest -m slow``). No timed assertions: only that
every measurement produced positive numbers.
"""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MEASUREMENTS = ('snapshot', 'restore', 'download', 'queue overhead',
                'scaling snapshot', 'scaling restore',
                'memory (download, net)', 'memory (download, raw)', 'size')

@pytest.mark.slow
def test_smoke_run_measures_everything(tmp_path):
    results = tmp_path / 'RESULTS.md'
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [ROOT, os.environ.get('PYTHONPATH')])))
    done = subprocess.run(
        [sys.executable, '-m', 'benchmarks', '--size', '2000', '--smoke',
         '--json', '--output', str(results)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result['errors'] == [] and result['skipped'] == []
    assert not results.exists()  # a smoke run writes no RESULTS.md
    assert result['setup']['mean_encoded_bytes'] > 0

    rows = result['rows']
    for name in MEASUREMENTS:
        found = [r for r in rows if r['measurement'].startswith(name)]
        assert found, name
        for r in found:
            assert r['ours'] > 0 and r['floor'] > 0, r
            assert r['ratio'] > 0 and not r['over_budget'], r
    assert {r['size'] for r in rows if r['measurement'] == 'download'} == {
        2000}

    codecs = {r['codec']: r for r in result['codecs']}
    assert set(codecs) == {'bz2', 'zlib', 'lzma', 'none'}
    for r in codecs.values():
        assert r['stored_bytes'] > 0 and r['snapshot_s'] > 0
        assert r['read_back_s'] > 0 and r['seed_bz2_bytes'] > 0


@pytest.mark.slow
def test_simulated_smoke_measures_every_run_exactly(tmp_path):
    """``--simulate --smoke``, small: every row, every run exact, the
    instrument's own checks passing, and no RESULTS.md written."""
    results = tmp_path / 'RESULTS.md'
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [ROOT, os.environ.get('PYTHONPATH')])))
    done = subprocess.run(
        [sys.executable, '-m', 'benchmarks', '--simulate', '--smoke',
         '--size', '300', '--workers', '1,2', '--json', '--output',
         str(results)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert not results.exists()
    assert result['errors'] == []
    runs = {(r['measurement'], r['workers'], r['mode']): r
            for r in result['rows']}
    expected = {(name, k, 'push') for k in (1, 2) for name in (
        'snapshot', 'restore', 'ideal snapshot', 'ideal restore')}
    expected |= {('snapshot', 2, 'poll'), ('restore', 2, 'poll')}
    assert set(runs) == expected
    for r in runs.values():
        assert r['problems'] == [], r  # finished, exact, queue empty
        assert r['seconds'] > 0 and r['counts']['calls'] > 0, r
        assert r['size'] == 300
    for name in ('snapshot', 'restore'):
        assert runs[(name, 1, 'push')]['tasks'] > 0
        assert runs[(name, 2, 'poll')]['idle_polls'] > 0
    # The ideal reader: 2 ranges of 200 read, 2 blobs put; 1 put of 300.
    assert runs[('ideal snapshot', 1, 'push')]['counts']['by_method'] == {
        'RunQuery': 2, 'Put': 2}
    assert runs[('ideal restore', 1, 'push')]['counts']['writes'] == 300
    assert result['memory']['300']['snapshot']['peak'] > 0
    assert result['memory']['300']['restore']['tasks'] > 0
    assert result['checks'] and all(c['ok'] for c in result['checks']), (
        result['checks'])


def test_counting_wrapper_counts_a_known_sequence():
    from google.appengine.api import datastore
    from google.appengine.ext import db

    from benchmarks import data, simcheck, simclock, simstub, simwork

    seen = {}
    sim = simstub.Sim(simclock.Scheduler())

    def body(part):
        db.put([simcheck.Probe(key_name='p%d' % n, value=n)
                for n in range(3)])
        seen['after put'] = sim.counts.as_dict()
        seen['keys'] = len(list(
            datastore.Query('BenchProbe', keys_only=True).Run()))

    with data.testbed(), sim:
        result = simwork.run(sim, None, 1, bodies=[body])
    after_put = seen['after put']
    assert (after_put['calls'], after_put['writes'], after_put['reads']) == (
        1, 3, 0)
    assert after_put['writes_user'] == 3 and after_put['writes_library'] == 0
    counts = result['counts']
    assert seen['keys'] == 3
    assert counts['by_method'] == {'Put': 1, 'RunQuery': 1}
    assert (counts['reads'], counts['keys_returned']) == (1, 3)
    # Virtual time: 2 calls of 30 ms, 3 entities and 3 keys at 0.5 ms each,
    # and this thread's few milliseconds of Python (CPU time, not the
    # machine's clock: a busy machine does not add to it).
    assert 0.063 <= result['seconds'] <= 0.063 + 0.05


def test_simulated_section_and_plain_table_keep_each_other(tmp_path):
    from benchmarks import report

    path = str(tmp_path / 'RESULTS.md')
    plain = {'machine': {'date': 'today'}, 'setup': {
        'command': 'python -m benchmarks', 'kind': 'K', 'properties': ['a'],
        'mean_encoded_bytes': 1.0, 'sizes': [1], 'repeats': 1, 'budget': 1},
        'rows': [], 'codecs': [], 'errors': [], 'skipped': []}
    report.write_results(path, plain)
    report.write_section(path, report.SIMULATED_HEADING,
                         report.SIMULATED_HEADING + '\n\nfirst\n')
    report.write_section(path, report.SIMULATED_HEADING,
                         report.SIMULATED_HEADING + '\n\nsecond\n')
    with open(path, encoding='utf-8') as written:
        text = written.read()
    assert 'first' not in text and text.count('second') == 1
    assert text.index('second') < text.index(report.CHANGES_HEADING)
    report.write_results(path, plain)  # the plain run keeps the section
    with open(path, encoding='utf-8') as written:
        again = written.read()
    assert again.count(report.SIMULATED_HEADING) == 1
    assert 'second' in again and report.CHANGES_HEADING in again



def test_the_simulated_stub_samples_productions_share_of_keys():
    """``__scatter__`` on 1 entity in 128, as production sets it, inside
    ``production_scatter``; on 1 in 2, the stub's share, outside."""
    from google.appengine.api import datastore

    from benchmarks import data, simstub

    def sampled():
        datastore.Put([datastore.Entity('BenchProbe', id=number)
                       for number in range(1, 2561)])
        sample = datastore.Query('BenchProbe', keys_only=True)
        sample.Order('__scatter__')
        return len(sample.Get(2560))

    with data.testbed(), simstub.production_scatter():
        assert 5 <= sampled() <= 40  # 20 expected
    with data.testbed():
        assert 1100 <= sampled() <= 1460  # 1,280 expected
