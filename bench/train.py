"""Training throughput: `fit` on the sample nuScenes tree with the small random models, per mode and batch size.

Each configuration runs in a fresh process (`python -m bench.train fit JSON`), so that its peak RSS is its own; epoch
times are the `seconds` of fit's epoch records."""
from __future__ import annotations
import json, shutil, tempfile, time
from .common import log, median, row, child, child_main, peak_kib
from .models import small_models

# ---- run in the child process

def fit_run(threads:int=None, **kw) -> dict:
    "One `clip_vlm.train.fit(**kw)`: per-epoch seconds and losses, the samples it trained on, peak RSS."
    import warnings
    warnings.filterwarnings('ignore')
    t0 = time.perf_counter()
    import torch
    if threads: torch.set_num_threads(threads)
    from clip_vlm.train import fit
    from clip_vlm.sources import build_samples
    n = len(build_samples(mode=kw['mode'], dataset=kw['dataset'], nusc_root=kw['nusc_root'], version=kw['version'],
                          captions=kw.get('captions'), max_samples=kw.get('max_samples'), cache_dir=kw.get('cache_dir')))
    _, hist = fit(progress=False, **kw)
    ep = [h for h in hist if h['kind'] == 'epoch']
    return dict(epoch_s=[h['seconds'] for h in ep], n=n, wall_s=time.perf_counter() - t0, threads=torch.get_num_threads(),
                loss=[h['loss'] for h in ep], computed=[h['frozen_views_computed'] for h in ep], maxrss_kib=peak_kib())

# ---- shared with the cache section

def sample_data(a) -> dict:
    "The sample nuScenes tree (4 x 5 samples, 1600x900 JPEGs, every one captioned), made once; --quick: 6 samples only."
    root = a.cache/'sample-nusc'
    if not (root/'.complete').exists():
        from clip_vlm.synthetic import make_nuscenes, make_captions
        if root.exists(): shutil.rmtree(root)
        log(f"data: generating the sample nuScenes tree in {root} (once) ...")
        make_nuscenes(root/'nuscenes', n_scenes=4, samples_per_scene=5, image_size=(1600, 900))
        make_captions(root/'captions.json', root/'nuscenes', frac=1.0, n_foreign=0)
        (root/'.complete').write_text('ok')
    return dict(nusc_root=str(root/'nuscenes'), captions=str(root/'captions.json'), version='v1.0-mini',
                max_samples=6 if a.quick else None)

def run_fit(a, models, data, **kw) -> dict:
    "One `fit` in a fresh process (see `fit_run`)."
    kw = dict(dataset='nuscenes', clip_model=str(models['clip']), qwen_model=str(models['qwen']), lr=1e-4, seed=0,
              threads=a.threads, **data, **kw)
    return child('train', 'fit', json.dumps(kw), env=dict(CLIP_VLM_CACHE=str(a.cache/'clip_vlm_cache')))

# ---- the section, in the orchestrating process

def bench(a) -> list:
    "The train section's rows (`a`: the parsed command line of bench/run.py)."
    models, data = small_models(a.cache/'models'), sample_data(a)
    E = 1 + (1 if a.quick else 3)
    configs = [('distill', {}), ('lm', {}), ('lm + LoRA r16', dict(use_lora=True, lora_r=16, lora_alpha=32))]
    warm_epochs = f'epochs 2-{E}' if E > 2 else 'epoch 2'
    out = []
    for name, extra in configs:
        for b in (1, 4):
            with tempfile.TemporaryDirectory(dir=a.cache) as cd:
                x = run_fit(a, models, data, mode=name.split()[0], epochs=E, batch_size=b, cache_dir=cd, **extra)
            n = x['n']
            warm = [n/s for s in x['epoch_s'][1:]]
            log(f"train: {name} batch {b}: epoch 1 {n/x['epoch_s'][0]:.2f}/s, later {', '.join(f'{v:.2f}' for v in warm)}/s, "
                f"peak RSS {x['maxrss_kib']/2**20:.2f} GiB")
            out.append(row('train', f'{name}, batch {b}: samples/s, warm feature cache ({warm_epochs})', median(warm),
                           'samples/s', values=warm, note=f"epoch 1 (cold cache) {n/x['epoch_s'][0]:.2f} samples/s; "
                           f"loss {x['loss'][0]:.3f} -> {x['loss'][-1]:.3f}", cold_samples_per_s=n/x['epoch_s'][0]))
            out.append(row('train', f'{name}, batch {b}: peak memory (child peak RSS, VmHWM, whole run)',
                           x['maxrss_kib']/2**20, 'GiB'))
    return out

if __name__ == '__main__': child_main({'fit': fit_run})
