"""Long runs: the feature cache's layout (bytes and files per sample, warm-epoch read time, content hash against decode)
before and after one-entry-per-sample storage, the `--dry-run` estimate on trainval-sized metadata, and the time to
write one step checkpoint (Qwen-tiny, and a connector of the real size with its AdamW state).

"Before" is the previous layout, read by the previous code: one safetensors file per view and tower, keyed by path,
size and mtime, in the tower's dtype (fp32 on a CPU, bf16 on a GPU). "After" is clip_vlm.distill.FeatureCache: one
16-bit file per sample and tower, keyed by the images' contents. Both are filled with tensors of the real models'
shapes (CLIP-L: 448 x 1024 per view; teacher: 112 x 2048 per view) for the same samples, and read back warm (page
cache) into memory (safetensors maps files lazily; a clone makes both layouts actually read their bytes), the way a
data-loader worker does: the new layout also hashes the JPEGs and checks shape, dtype and finiteness."""
from __future__ import annotations
import hashlib, json, os, shutil, tempfile, time
from pathlib import Path
import torch
from .common import log, median, row

CLIP_SHAPE, TEACHER_SHAPE = (448, 1024), (112, 2048)

class OldCache:
    "The previous layout: one file per view and tower, keyed by path, size and mtime (for comparison only)."
    def __init__(self, root): self.root = Path(root)
    def _file(self, kind, path, **s):
        p = Path(path).resolve(); st = p.stat()
        k = hashlib.sha1(f"{kind}|{p}|{st.st_size}|{st.st_mtime_ns}|{json.dumps(s, sort_keys=True)}".encode()).hexdigest()
        return self.root/kind/k[:2]/f"{k}.safetensors"
    def put(self, kind, path, t, **s):
        from safetensors.torch import save_file
        f = self._file(kind, path, **s); f.parent.mkdir(parents=True, exist_ok=True); save_file({'t': t.contiguous()}, f)
    def get(self, kind, path, **s):
        from safetensors.torch import load_file
        f = self._file(kind, path, **s)
        return load_file(f)['t'] if f.exists() else None

def _disk(folder) -> tuple:
    n = b = 0
    for d, _, fs in os.walk(folder):
        for f in fs: n += 1; b += os.stat(os.path.join(d, f)).st_blocks*512
    return n, b

def cache_rows(a, samples) -> list:
    from clip_vlm.distill import FeatureCache, content_key
    from clip_vlm.image import load_view
    R = a.repeats
    rows = []
    with tempfile.TemporaryDirectory(dir=a.cache) as d:
        d = Path(d)
        old32, old16, new = OldCache(d/'old32'), OldCache(d/'old16'), FeatureCache(d/'new', write_behind=False)
        g = torch.Generator().manual_seed(0)
        for s in samples:
            paths = list(s.views.values())
            V = len(paths)
            c, t = torch.randn(V, *CLIP_SHAPE, generator=g), torch.randn(V, *TEACHER_SHAPE, generator=g)
            for i, p in enumerate(paths):
                old32.put('clip', p, c[i]); old32.put('teacher', p, t[i])
                old16.put('clip', p, c[i].bfloat16()); old16.put('teacher', p, t[i].bfloat16())
            keys = [content_key(p) for p in paths]
            new.put('clip', new.key('clip', keys), c.bfloat16()); new.put('teacher', new.key('teacher', keys), t.bfloat16())
        n = len(samples)
        sizes = {k: _disk(d/k) for k in ('old32', 'old16', 'new')}
        for k, label in (('old32', 'before (per view and tower, fp32 tower on a CPU)'),
                         ('old16', 'before (per view and tower, bf16 tower on a GPU)'), ('new', 'after (per sample and tower, 16-bit)')):
            files, b = sizes[k]
            rows.append(row('longrun', f'cache {label}: bytes per sample (6 views, distill)', b/n/1e6, 'MB',
                            note=f'{files/n:g} files per sample'))
        def old_epoch(c):
            for s in samples:
                for p in s.views.values(): c.get('clip', p).clone(); c.get('teacher', p).clone()  # into memory
        def new_epoch():
            for s in samples:
                paths = list(s.views.values()); keys = [content_key(p) for p in paths]
                new.get('clip', new.key('clip', keys), (len(paths), *CLIP_SHAPE), torch.bfloat16).clone()
                new.get('teacher', new.key('teacher', keys), (len(paths), *TEACHER_SHAPE), torch.bfloat16).clone()
        times = {'old32': [], 'old16': [], 'new': []}
        for _ in range(R):  # interleaved
            for k in times:
                t0 = time.perf_counter()
                (new_epoch() if k == 'new' else old_epoch(old32 if k == 'old32' else old16))
                times[k].append(time.perf_counter() - t0)
        m = {k: median(v) for k, v in times.items()}
        rows += [row('longrun', f'warm epoch read, before (fp32 files, path/mtime keys), {n} samples', m['old32'], 's', values=times['old32']),
                 row('longrun', f'warm epoch read, before (bf16 files, path/mtime keys), {n} samples', m['old16'], 's', values=times['old16']),
                 row('longrun', f'warm epoch read, after (content hash + one file per sample and tower), {n} samples', m['new'], 's',
                     values=times['new'], ratio=m['old16']/m['new'], ratio_to='bf16 before / after =')]
    paths = [p for s in samples for p in s.views.values()][:36]
    hashes, decodes = [], []
    for _ in range(R):
        t0 = time.perf_counter()
        for p in paths: content_key(p)
        hashes.append((time.perf_counter() - t0)/len(paths))
        t0 = time.perf_counter()
        for p in paths: load_view(p)
        decodes.append((time.perf_counter() - t0)/len(paths))
    size = median([os.path.getsize(p) for p in paths])
    rows += [row('longrun', f'content hash (BLAKE2b) of one view (1600x900 JPEG, {size/1e3:.0f} kB)', median(hashes)*1e3, 'ms', values=hashes),
             row('longrun', 'decode + resize of one view to 224x392 (load_view)', median(decodes)*1e3, 'ms', values=decodes,
                 ratio=median(decodes)/median(hashes), ratio_to='decode / hash =')]
    return rows

def estimate_rows(a) -> list:
    "`run_cost` (what --dry-run prints) on trainval-sized metadata without images: seconds and the estimate."
    from .index import trainval_metadata
    from .common import child
    root = trainval_metadata(a)
    x = child('longrun', 'estimate', json.dumps(dict(root=str(root), cache_dir=str(a.cache/'clip_vlm_cache'))))
    return [row('longrun', f"--dry-run cache estimate, trainval-sized metadata ({x['samples']:,} samples x 6 views, distill, real model configs)",
                x['seconds'], 's', note=f"estimate {x['bytes']/1e9:.0f} GB in {x['files']:,} files (samples built in {x['build_s']:.1f} s)")]

def estimate(root:str, cache_dir:str) -> dict:
    "In a child process: build the samples (require_files off: no images) and the cost estimate, timed."
    t0 = time.perf_counter()
    from clip_vlm.plan import fit_args, run_cost
    a = fit_args(mode='distill', dataset='nuscenes', nusc_root=root, version='v1.0-trainval', cache_dir=cache_dir)
    t1 = time.perf_counter()
    from types import SimpleNamespace
    from clip_vlm.data import nusc_index
    # no images in this tree: the samples' views are the index's image entries (what build_samples checks on disk)
    s = [SimpleNamespace(views=r['images']) for r in nusc_index(root, 'v1.0-trainval', cache_dir)]
    t2 = time.perf_counter()
    c = run_cost(a, s)
    return dict(seconds=time.perf_counter() - t2, build_s=t2 - t1, samples=c['samples'], bytes=c['cache_bytes'], files=c['cache_files'])

def checkpoint_rows(a) -> list:
    "Time to write one step checkpoint (`save_checkpoint`): Qwen-tiny with LoRA, and a real-size connector + AdamW state."
    from clip_vlm.tiny import make_tiny_models
    from clip_vlm.model import CLIPQwenVLM, Connector
    from clip_vlm.train import save_checkpoint
    tiny = make_tiny_models()
    rows = []
    for name, real in (('Qwen-tiny + LoRA r8 (tiny connector)', False), ('connector of the real size (CLIP-L -> Qwen2.5-VL-3B)', True)):
        vlm = CLIPQwenVLM.build(tiny['clip'], tiny['qwen2_5_vl'], use_lora=not real, lora_r=8, lora_alpha=16, seed=0, device='cpu')
        if real: vlm.connector = Connector(1024, 2048, 2)
        params = [p for p in (vlm.connector.parameters() if real else vlm.parameters()) if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-4)
        for p in params: p.grad = torch.zeros_like(p)
        opt.step()  # the optimizer state exists, as in a real run
        n = sum(p.numel() for p in params)
        history = [dict(kind='step', mode='lm', epoch=1, step=i, loss=1.0, lr=1e-4, grad_norm=1.0, samples_per_s=1.0) for i in range(1000)]
        times = []
        with tempfile.TemporaryDirectory(dir=a.cache) as d:
            for _ in range(a.repeats):
                t0 = time.perf_counter()
                save_checkpoint(Path(d)/'ck', vlm, opt, dict(epoch=0, batch=10, step=10), history, dict(mode='lm'))
                times.append(time.perf_counter() - t0)
            size = _disk(Path(d)/'ck')[1]
        rows.append(row('longrun', f'step checkpoint write, {name}: {n/1e6:.1f} M trainable parameters', median(times), 's',
                        values=times, note=f'{size/1e6:.0f} MB on disk (weights, AdamW state, 1000-step metrics and loss plot)'))
    return rows

def bench(a) -> list:
    "The longrun section's rows (`a`: the parsed command line of bench/run.py)."
    from .train import sample_data
    from clip_vlm.sources import build_samples
    data = sample_data(a)
    samples = build_samples(mode='distill', dataset='nuscenes', nusc_root=data['nusc_root'], version=data['version'],
                            max_samples=data['max_samples'], cache_dir=str(a.cache/'clip_vlm_cache'))
    rows = cache_rows(a, list(samples))
    log('longrun: cache rows done')
    rows += checkpoint_rows(a)
    log('longrun: checkpoint rows done')
    rows += estimate_rows(a)
    return rows

if __name__ == '__main__':
    from .common import child_main
    child_main({'estimate': estimate})
