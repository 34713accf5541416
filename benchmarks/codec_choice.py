"""Which codec should store new ranges? bz2, zlib, lzma and none, measured.

For each codec: a snapshot written with it (stored bytes, time to create,
time to read every record back) and the codec alone on our stored format
in memory (varint-delimited records, one stream per range of 200).
"""
import time

from lovely_gae.snapshot import api, storage

from . import data, floors, timing

__all__ = ['measure']

CODEC_NAMES = ('bz2', 'zlib', 'lzma', 'none')
RANGE = 200


def stored_format(records):
    """The uncompressed stored bytes of each range of 200 records."""
    return [b''.join(storage.varint(len(r)) + r
                     for r in records[start:start + RANGE])
            for start in range(0, len(records), RANGE)]


def _in_memory(codec, ranges):
    make_compressor, make_decompressor = storage.CODECS[codec]
    started = time.perf_counter()
    stored = []
    for raw in ranges:
        compressor = make_compressor()
        stored.append(compressor.compress(raw) + compressor.flush())
    compress = time.perf_counter() - started
    started = time.perf_counter()
    for blob in stored:
        make_decompressor().decompress(blob)
    return compress, time.perf_counter() - started


def _snapshot(budget, codec, size):
    snap = api.create_snapshot([data.KIND], codec=codec)
    timing.drain(budget)
    data.settle()  # the snapshot's own writes, in its clock
    budget.stop()
    snap = api.get_snapshot(snap.id)
    if snap.status != snap.STATUS_FINISHED:
        raise timing.OverBudget(budget.elapsed(), 0.0)
    return snap.id


def _read_back(budget, snapshot_id):
    count = 0
    for backup in api.get_snapshot(snapshot_id).range_backups():
        for _ in storage.iter_records(backup.iter_parts(verify=False),
                                      backup.codec):
            count += 1
    budget.stop()
    return count


def measure(ctx, size):
    """One row per codec; ``vs bz2 seed`` compares with the seed's bz2."""
    rows = []
    seed = raw = None
    for codec in CODEC_NAMES:
        with data.testbed():
            data.fill(size)
            data.settle()  # setup's writes, before the clock
            records = data.dataset(size)  # needs a testbed's app id
            if seed is None:
                seed, raw = _seed_bytes(records), stored_format(records)
            compress, decompress = _in_memory(codec, raw)
            made = ctx.timed('codec %s snapshot %d' % (codec, size),
                             lambda b: _snapshot(b, codec, size))
            row = {'codec': codec, 'size': size, 'raw_bytes': sum(
                map(len, records)), 'seed_bz2_bytes': seed,
                'compress_s': compress, 'decompress_s': decompress,
                'snapshot_s': made.estimate, 'over_budget': made.over_budget,
                'stored_bytes': None, 'read_back_s': None}
            if not made.over_budget:
                snap = api.get_snapshot(made.value)
                row['stored_bytes'] = snap.progress()['bytes']
                read = ctx.timed('codec %s read back %d' % (codec, size),
                                 lambda b: _read_back(b, made.value))
                if read.value != size:
                    raise RuntimeError('codec %s read back %r records, not %d'
                                       % (codec, read.value, size))
                row['read_back_s'] = read.seconds
            rows.append(row)
    return rows


def _seed_bytes(records):
    """The seed's format, emulated: bz2 of a pickled list per range."""
    return sum(len(floors.seed_blob(records[i:i + RANGE]))
               for i in range(0, len(records), RANGE))
