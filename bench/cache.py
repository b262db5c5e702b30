"""Feature cache: distill epochs with `--cache-dir` (epoch 1 computes and stores the frozen tokens, later epochs read
them back) against epochs without it, each run of `fit` in a fresh process with the small random models; and the
cost of an entry's checksum (CRC-32, checked on every read) beside the cost of decoding a real-size entry."""
from __future__ import annotations
import hashlib, tempfile, time
from pathlib import Path
from .common import log, median, row
from .models import small_models
from .train import sample_data, run_fit

def _timed(fn, repeats:int) -> list:
    "Seconds of each of `repeats` calls of `fn` (after one untimed call)."
    fn(); out = []
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(); out.append(time.perf_counter() - t0)
    return out

def checksum_rows(a) -> list:
    "Verifying a real-size entry's CRC-32 against decoding it (safe_open, get_tensor, the finiteness pass `get` makes): side by side."
    import torch
    from safetensors import safe_open
    from clip_vlm.distill import FeatureCache, _checksum, _finite
    R, rows = max(5, a.repeats), []
    shapes = {'clip': (6, 448, 1024), 'teacher': (6, 112, 2048)}  # six views of the real models at 224x392
    with tempfile.TemporaryDirectory(dir=a.cache) as d:
        c = FeatureCache(Path(d), write_behind=False)
        for kind, shape in shapes.items():
            k = c.key(kind, [kind]); c.put(kind, k, torch.randn(shape).bfloat16()); f = c.file(kind, k)
            def decode():
                with safe_open(f, 'pt') as g: t = g.get_tensor('t')
                assert _finite(t)
                return t
            t = decode()
            dec, crc = _timed(decode, R), _timed(lambda: _checksum(t), R)
            b2 = _timed(lambda: hashlib.blake2b(t.reshape(-1).view(torch.uint8).numpy(), digest_size=16).digest(), R)
            get = _timed(lambda: c.get(kind, k, shape, torch.bfloat16), R)
            mb = 2*t.numel()/1e6
            log(f"cache: {kind} entry {mb:.1f} MB: decode {median(dec)*1e3:.2f} ms, crc32 {median(crc)*1e3:.2f} ms, "
                f"blake2b {median(b2)*1e3:.2f} ms, get {median(get)*1e3:.2f} ms")
            rows += [row('cache', f'decode a {kind} entry {shape} ({mb:.1f} MB, page cache warm: safe_open, get_tensor, finiteness pass)',
                         median(dec)*1e3, 'ms', values=dec),
                     row('cache', f'verify its checksum (zlib.crc32, {mb/median(crc)/1e3:.1f} GB/s)', median(crc)*1e3, 'ms', values=crc,
                         ratio=median(crc)/median(dec), ratio_to='verify / decode =',
                         note=f"BLAKE2b would take {median(b2)*1e3:.2f} ms ({median(b2)/median(crc):.1f}x crc32); "
                              f"FeatureCache.get in all {median(get)*1e3:.2f} ms")]
    return rows

def bench(a) -> list:
    "The cache section's rows (`a`: the parsed command line of bench/run.py)."
    checks = checksum_rows(a)
    models, data = small_models(a.cache/'models'), sample_data(a)
    E = 3 if a.quick else 5
    runs, R = [], min(a.repeats, 3)  # each run: a fresh process, a fresh cache folder, E epochs
    for r in range(R):
        with tempfile.TemporaryDirectory(dir=a.cache) as cd:
            x = run_fit(a, models, data, mode='distill', epochs=E, cache_dir=cd)
        runs.append(x)
        log(f"cache: run {r+1}/{R}: epochs " + ', '.join(f'{s:.2f}' for s in x['epoch_s']) + ' s; views computed '
            + str(x['computed']))
    n = runs[0]['n']
    first = [x['epoch_s'][0] for x in runs]
    later = [s for x in runs for s in x['epoch_s'][1:]]
    per_run = [x['epoch_s'][0]/median(x['epoch_s'][1:]) for x in runs]
    ok_computed = all(x['computed'][0] == x['computed'][-1] == 6*n for x in runs)
    nc = run_fit(a, models, data, mode='distill', epochs=2)
    log(f"cache: without --cache-dir: epochs " + ', '.join(f'{s:.2f}' for s in nc['epoch_s']) + ' s')
    ratio = median(first)/median(later)
    return checks + [row('cache', f'distill epoch 1, --cache-dir (cold: decode, CLIP + teacher, store; {n} samples x 6 views)',
                median(first), 's', values=first),
            row('cache', f'distill epochs 2-{E}, --cache-dir (warm: cached tokens only)', median(later), 's', values=later,
                ratio=ratio, ratio_to='epoch 1 / warm epoch =', target='>= 10x', ok=ratio >= 10,
                note=f"per-run ratios {', '.join(f'{v:.1f}' for v in per_run)}; frozen towers ran only in epoch 1: {ok_computed}"),
            row('cache', 'distill epoch without --cache-dir (every epoch recomputes)', median(nc['epoch_s']), 's',
                values=nc['epoch_s'], ratio=median(nc['epoch_s'])/median(later), ratio_to='/ warm cached epoch =')]
