"""Download a snapshot in a process of its own and report its peak memory.

``python -m benchmarks._download_child --datastore FILE --snapshot ID
--out DIR`` loads the datastore file, notes its resident memory, downloads
and prints one JSON line: ``baseline_rss`` (after loading, before the
download), ``peak_rss`` (highest during the download), ``maxrss_whole``
(the whole process, loading included) and ``file_size``, in bytes.
"""
import argparse
import ctypes
import gc
import json
import os
import resource
import threading
import time

__all__ = ['main']


def _status(field):
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith(field + ':'):
                return int(line.split()[1]) * 1024
    return None


def _release_freed_memory():
    gc.collect()
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak():
    """Reset the kernel's high-water mark (Linux >= 4.0); False if we can't."""
    try:
        with open('/proc/self/clear_refs', 'w') as clear:
            clear.write('5')
    except OSError:
        return False
    return _status('VmHWM') is not None


class _Sampler(threading.Thread):
    """Highest RSS seen every few milliseconds, where the kernel can't say."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak = _status('VmRSS') or 0
        self.running = True

    def run(self):
        while self.running:
            self.peak = max(self.peak, _status('VmRSS') or 0)
            time.sleep(0.005)


def main(argv=None):
    parser = argparse.ArgumentParser(prog='benchmarks._download_child')
    parser.add_argument('--datastore', required=True)
    parser.add_argument('--snapshot', type=int, required=True)
    parser.add_argument('--out', required=True)
    args = parser.parse_args(argv)

    from lovely_gae.snapshot import client
    from . import data

    started = time.perf_counter()
    with data.testbed(args.datastore):
        loaded = time.perf_counter() - started
        _release_freed_memory()
        kernel_peak = _reset_peak()
        baseline = _status('VmRSS')
        sampler = None
        if not kernel_peak:
            sampler = _Sampler()
            sampler.start()
        started = time.perf_counter()
        path = client.download_snapshot(args.out, args.snapshot,
                                        progress=lambda event, **info: None)
        seconds = time.perf_counter() - started
        if sampler:
            sampler.running = False
            sampler.join()
            peak = sampler.peak
        else:
            peak = _status('VmHWM')
    size = os.path.getsize(path)
    os.unlink(path)
    print(json.dumps({
        'baseline_rss': baseline, 'peak_rss': max(peak, baseline),
        'peak_method': 'kernel high-water mark reset after loading'
                       if kernel_peak else 'sampled every 5 ms',
        'maxrss_whole': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        * 1024, 'file_size': size, 'load_seconds': loaded,
        'download_seconds': seconds}))


if __name__ == '__main__':
    main()
