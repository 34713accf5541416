"""The benchmark still runs: its smoke mode, as CI calls it, end to end.

No timed assertions: only that every measurement produced positive numbers.
"""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MEASUREMENTS = ('snapshot', 'restore', 'download', 'queue overhead',
                'scaling snapshot', 'scaling restore',
                'memory (download, net)', 'memory (download, raw)', 'size')


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
