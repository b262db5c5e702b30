"""Feature cache: distill epochs with `--cache-dir` (epoch 1 computes and stores the frozen tokens, later epochs read
them back) against epochs without it, each run of `fit` in a fresh process with the small random models."""
from __future__ import annotations
import tempfile
from .common import log, median, row
from .models import small_models
from .train import sample_data, run_fit

def bench(a) -> list:
    "The cache section's rows (`a`: the parsed command line of bench/run.py)."
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
    return [row('cache', f'distill epoch 1, --cache-dir (cold: decode, CLIP + teacher, store; {n} samples x 6 views)',
                median(first), 's', values=first),
            row('cache', f'distill epochs 2-{E}, --cache-dir (warm: cached tokens only)', median(later), 's', values=later,
                ratio=ratio, ratio_to='epoch 1 / warm epoch =', target='>= 10x', ok=ratio >= 10,
                note=f"per-run ratios {', '.join(f'{v:.1f}' for v in per_run)}; frozen towers ran only in epoch 1: {ok_computed}"),
            row('cache', 'distill epoch without --cache-dir (every epoch recomputes)', median(nc['epoch_s']), 's',
                values=nc['epoch_s'], ratio=median(nc['epoch_s'])/median(later), ratio_to='/ warm cached epoch =')]
