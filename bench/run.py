#!/usr/bin/env python
"""clip_vlm benchmarks: speed and memory, measured side by side in one run (DESIGN.md §7, issue 8).

    .venv/bin/python bench/run.py                      # every CPU section (gpu runs too when CUDA is present)
    .venv/bin/python bench/run.py --only image,index   # some sections
    .venv/bin/python bench/run.py --quick              # small sizes, 2 repeats: a smoke test (about a minute or two)
    .venv/bin/python bench/run.py --only gpu           # the real-size GPU section (random weights; needs CUDA)

Sections: image (preprocessing images/s), cache (distill epochs with --cache-dir), index (sample index time/memory),
train (CPU samples/s and peak memory per mode), gpu (real-size models, bf16, MFU). Every number is a median over
`--repeats` runs; ratios are between medians measured in the same run. Results go to bench/results.json (merged:
sections not run keep their previous numbers) and a table is printed. Generated inputs (JPEGs, trainval-sized
metadata, small random models) are cached under bench/.cache (git-ignored) and reused.
"""
from __future__ import annotations
import argparse, contextlib, io, json, math, os, platform, resource, shutil, statistics, subprocess, sys, tempfile, time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path: sys.path.insert(0, str(REPO))  # this checkout's clip_vlm
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
os.environ.setdefault('HF_HUB_OFFLINE', '1')  # nothing here may download
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')

SECTIONS = ('image', 'cache', 'index', 'train', 'gpu')

# ----------------------------------------------------------------------------------------------------------------
# helpers

def log(*a):
    print(*a, file=sys.stderr, flush=True)

def median(xs): return statistics.median(xs) if xs else float('nan')

def machine() -> dict:
    "What this machine is: cores, CPU model, RAM, load, library versions."
    cpu = next((l.split(':', 1)[1].strip() for l in Path('/proc/cpuinfo').read_text().splitlines()
                if l.startswith('model name')), platform.processor()) if Path('/proc/cpuinfo').exists() else platform.processor()
    flags = next((l for l in Path('/proc/cpuinfo').read_text().splitlines() if l.startswith('flags')), '') if Path('/proc/cpuinfo').exists() else ''
    mem = next((int(l.split()[1]) for l in Path('/proc/meminfo').read_text().splitlines() if l.startswith('MemTotal')), 0) \
        if Path('/proc/meminfo').exists() else 0
    import torch, PIL, PIL.features, transformers
    out = dict(nproc=len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count(),
               cpu=cpu, avx512bf16='avx512_bf16' in flags, ram_gib=round(mem/2**20, 1), python=platform.python_version(),
               torch=torch.__version__, torch_threads=torch.get_num_threads(), transformers=transformers.__version__,
               pillow=PIL.__version__, libjpeg_turbo=PIL.features.version_feature('libjpeg_turbo'),
               cuda=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    return out

def loadavg(): return [round(x, 2) for x in os.getloadavg()]

def row(section, case, value, unit, *, values=None, ratio=None, ratio_to=None, target=None, ok=None, note=None, **extra):
    "One result line."
    r = dict(section=section, case=case, median=value, unit=unit)
    if values is not None: r['values'] = [round(v, 6) if isinstance(v, float) else v for v in values]
    if ratio is not None: r.update(ratio=ratio, ratio_to=ratio_to)
    if target is not None: r.update(target=target, ok=ok)
    if note: r['note'] = note
    r.update(extra)
    return r

def fmt(v):
    if v is None: return '-'
    if isinstance(v, bool): return 'yes' if v else 'NO'
    if isinstance(v, int): return f'{v:,}'
    if isinstance(v, float):
        if math.isnan(v): return 'nan'
        a = abs(v)
        return f'{v:,.0f}' if a >= 100 else f'{v:.1f}' if a >= 10 else f'{v:.2f}' if a >= 0.1 else f'{v:.3g}'
    return str(v)

def table(rows) -> str:
    "A markdown table of result rows."
    head = ['section', 'case', 'median', 'unit', 'ratio', 'target', 'met', 'notes']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '|'.join('---' for _ in head) + '|']
    for r in rows:
        ratio = f"{r['ratio_to']} {fmt(r['ratio'])}x" if r.get('ratio') is not None else '-'
        lines.append('| ' + ' | '.join([r['section'], r['case'], fmt(r['median']), r['unit'], ratio,
                                        r.get('target') or '-', fmt(r.get('ok')) if 'ok' in r else '-', r.get('note') or '']) + ' |')
    return '\n'.join(lines)

def child(code:str, *args, env=None, timeout=3600, stream_stderr=False) -> dict:
    "Run `code` in a fresh Python (this interpreter) and parse the JSON it prints last on stdout."
    e = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get('PYTHONPATH', ''))
    e.update(env or {})
    p = subprocess.run([sys.executable, '-c', code, *map(str, args)], stdout=subprocess.PIPE,
                       stderr=None if stream_stderr else subprocess.PIPE, text=True, env=e, timeout=timeout)
    if p.returncode:
        raise RuntimeError(f"child failed (exit {p.returncode}):\n{(p.stderr or '')[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])

# ----------------------------------------------------------------------------------------------------------------
# 1. image pipeline

def make_jpegs(folder:Path, n:int, quality:int=90) -> list:
    "n realistic 1600x900 camera JPEGs (smooth structure + texture, like clip_vlm.sample's), made once."
    from clip_vlm.sample import camera_image, _noise_tile
    from clip_vlm.data import CAMERAS
    import numpy as np
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder/f'{i:03d}_{CAMERAS[i % 6]}.jpg' for i in range(n)]
    todo = [p for p in paths if not p.exists()]
    if todo:
        tile = _noise_tile(np.random.default_rng(0), (1600, 900))
        for i, p in enumerate(paths):
            if p.exists(): continue
            tmp = p.with_suffix('.tmp')
            camera_image(seed=0, scene=i // 6, frame=i % 5, camera=CAMERAS[i % 6], tile=tile).save(tmp, 'JPEG', quality=quality)
            os.replace(tmp, p)
    return paths

def psnr(a, b):
    import numpy as np
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64))**2)
    return float('inf') if mse == 0 else float(10*np.log10(255**2/mse))

class _Images:
    "A map-style dataset: one image path -> CLIP pixel values through one of the pipelines (picklable for workers)."
    def __init__(self, paths, fn): self.paths, self.fn = paths, fn
    def __len__(self): return len(self.paths)
    def __getitem__(self, i): return self.fn(self.paths[i])

def _pipelines():
    "name -> (function(path) -> CLIP pixel values, output); module-level functions, so DataLoader workers can use them."
    from functools import partial
    return {'clip_vlm (load_view + clip_pixels)': partial(_ours, draft=True),
            'full decode + resize (+ clip_pixels)': partial(_ours, draft=False),
            'CLIPImageProcessor (stock: short side 224, crop 224x224)': _hf,
            'CLIPImageProcessor (asked for 224x392, no crop)': _hf_matched}

_PROC = None
def _proc():
    global _PROC
    if _PROC is None:
        from clip_vlm.tiny import clip_image_processor
        _PROC = clip_image_processor()  # CLIPImageProcessorPil with openai/clip-vit-large-patch14's settings
    return _PROC

def _ours(path, draft=True):
    from clip_vlm.model import load_view, clip_pixels
    return clip_pixels(load_view(path, draft=draft)[None], _proc())

def _hf(path):
    "The stock processor as its model card uses it: decode, resize short side to 224, centre crop 224x224, normalise."
    from PIL import Image
    with Image.open(path) as im: im = im.convert('RGB')
    return _proc()(images=im, return_tensors='pt')['pixel_values']

def _hf_matched(path):
    "The stock processor asked for clip_vlm's view size (224x392, no crop): same output size as ours."
    from PIL import Image
    with Image.open(path) as im: im = im.convert('RGB')
    return _proc()(images=im, size={'height': 224, 'width': 392}, do_center_crop=False, return_tensors='pt')['pixel_values']

def _rates(fns:dict, paths, repeats:int, what:str) -> dict:
    "images/s of each function over `paths`, `repeats` times, interleaved so that load changes hit every case alike."
    for f in fns.values(): f(paths[0])  # warm up imports and caches
    rates = {k: [] for k in fns}
    for r in range(repeats):
        for k, f in fns.items():
            t = time.perf_counter()
            for p in paths: f(p)
            rates[k].append(len(paths)/(time.perf_counter() - t))
        log(f"image: {what}, repeat {r+1}/{repeats}: " + ', '.join(f'{v[-1]:.0f}/s' for v in rates.values()))
    return rates

IMAGE_TARGETS = {'full decode + resize (+ clip_pixels)': 3, 'CLIPImageProcessor (stock: short side 224, crop 224x224)': 5}

def _image_rows(rates, where, base_key='clip_vlm (load_view + clip_pixels)', extra=None):
    base, out = median(rates[base_key]), []
    for k, v in rates.items():
        m, t = median(v), IMAGE_TARGETS.get(k)
        ratio = None if k == base_key else base/m
        rto = 'clip_vlm faster by'
        if k.startswith('clip_vlm,'): ratio, rto = m/base, 'vs clip_vlm as fit() does it:'  # a variant of ours, not a baseline
        out.append(row('image', f'{k}, {where}', m, 'images/s', values=v, ratio=ratio,
                       ratio_to=None if ratio is None else rto, target=f'clip_vlm >= {t}x' if t else None,
                       ok=(ratio >= t) if t else None, **(extra(k) if extra else {})))
    return out

def _decode_quarter(path):
    from PIL import Image
    with Image.open(path) as im:
        im.draft('RGB', (im.width//4, im.height//4)); im.load(); return im.size

def _decode_full(path):
    from PIL import Image
    with Image.open(path) as im: im.load(); return im.size

def bench_image(a) -> list:
    import numpy as np, torch, warnings
    from clip_vlm.model import load_view, IMAGE_SIZE
    warnings.filterwarnings('ignore', message='The given NumPy array is not writable')
    n = 12 if a.quick else a.images
    paths = make_jpegs(a.cache/'jpegs', max(n, 12))[:n]
    kb = [p.stat().st_size/1024 for p in paths]
    log(f"image: {n} JPEGs 1600x900 q90, {min(kb):.0f}-{max(kb):.0f} KB (median {median(kb):.0f})")
    out = [row('image', f'{n} generated 1600x900 JPEGs, quality 90', median(kb), 'KB', values=kb, target='150-300 KB',
               ok=all(150 <= k <= 300 for k in kb), note=f'min {min(kb):.0f}, max {max(kb):.0f}')]
    # same output within resize tolerance
    ps = [psnr(load_view(p), load_view(p, draft=False)) for p in paths]
    mad = [float(np.abs(load_view(p).astype(int) - load_view(p, draft=False)).mean()) for p in paths]
    out.append(row('image', f'PSNR clip_vlm vs full decode ({IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} views), worst image', min(ps), 'dB',
                   values=ps, target='>= 35 dB', ok=min(ps) >= 35,
                   note=f'median {median(ps):.1f} dB, mean abs diff {median(mad):.2f} grey levels'))
    # The timings run in fresh processes, twice: with glibc's default allocator settings, and with large buffers
    # reused instead of mmap-ed and page-faulted afresh for every image. The full-size baselines allocate 4-17 MB per
    # image and their speed depends on that state by up to 1.6x; clip_vlm never allocates a full-size frame.
    for label, env, full in (('glibc malloc default', {}, True),
                             ('glibc malloc reusing large buffers', MALLOC_REUSE, False)):
        log(f"image: timings with {label} ...")
        out += child(IMAGE_CHILD, HERE, json.dumps(dict(paths=[str(p) for p in paths], repeats=a.repeats, workers=a.workers,
                                                        label=label, full=full)), env=env, stream_stderr=True)
    return out

# M_MMAP_THRESHOLD at its 64-bit maximum (32 MiB) and a high trim threshold: buffers of a few MB come from the heap
MALLOC_REUSE = dict(MALLOC_MMAP_THRESHOLD_=str(32*2**20), MALLOC_TRIM_THRESHOLD_=str(256*2**20))

IMAGE_CHILD = r"""
import json, sys, warnings
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import run
a = json.loads(sys.argv[2])
print(json.dumps(run.image_timings([Path(p) for p in a['paths']], a['repeats'], a['workers'], a['label'], a['full']), default=str))
"""

def image_timings(paths, repeats:int, workers:int, label:str, full:bool=True) -> list:
    "Rows of images/s: decode + resize, whole pipelines in one process, and through DataLoader workers."
    import torch, warnings
    from clip_vlm.model import load_view
    warnings.filterwarnings('ignore', message='The given NumPy array is not writable')
    out, tag = [], f'; {label}'
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker (PyTorch sets 1 thread there)
    try:
        dec = {'load_view (draft)': lambda p: load_view(p), 'load_view(draft=False)': lambda p: load_view(p, draft=False)}
        if full: dec.update({'decode 1/4': _decode_quarter, 'decode full': _decode_full})
        dec = _rates(dec, paths, repeats, f'decode + resize only{tag}')
        r = median(dec['load_view (draft)'])/median(dec['load_view(draft=False)'])
        out.append(row('image', f'load_view: reduced-scale decode + crop + resize, 1 process{tag}', median(dec['load_view (draft)']),
                       'images/s', values=dec['load_view (draft)']))
        out.append(row('image', f'load_view(draft=False): full decode + crop + resize, 1 process{tag}',
                       median(dec['load_view(draft=False)']), 'images/s', values=dec['load_view(draft=False)'], ratio=r,
                       ratio_to='load_view faster by', target='>= 3x (DESIGN 7)', ok=r >= 3))
        if full:
            out.append(row('image', f'reference: JPEG decode alone at 1/4 scale (PIL draft; no crop, resize or normalisation){tag}',
                           median(dec['decode 1/4']), 'images/s', values=dec['decode 1/4'],
                           note='the floor of any reduced-scale pipeline: entropy (Huffman) decoding is not reduced by DCT scaling'))
            out.append(row('image', f'reference: JPEG decode alone at full size{tag}', median(dec['decode full']), 'images/s',
                           values=dec['decode full']))
        pipes = _pipelines()
        shapes = {k: 'x'.join(map(str, f(paths[0]).shape[-2:])) for k, f in pipes.items()}
        rates = _rates(pipes, paths, repeats, f'1 process, torch 1 thread{tag}')
        out += _image_rows(rates, f'1 process (torch 1 thread){tag}', extra=lambda k: dict(output=shapes[k]))
    finally: torch.set_num_threads(threads)
    if threads > 1 and full:
        k = 'clip_vlm (load_view + clip_pixels)'
        r2 = _rates({k: pipes[k]}, paths, repeats, f'1 process, torch {threads} threads{tag}')
        out.append(row('image', f'{k}, 1 process (torch {threads} threads){tag}', median(r2[k]), 'images/s', values=r2[k],
                       ratio=median(r2[k])/median(rates[k]), ratio_to='vs 1 thread:',
                       note='clip_pixels with torch\'s default intra-op threads: sensitive to other load on the machine (RESULTS.md)'))
    # DataLoader workers, the way fit() loads data: one item per sample (its 6 views); workers decode to uint8 views,
    # the main process normalises them (clip_pixels) before CLIP. Baselines: the same split with full decode, and
    # CLIPImageProcessor run in the workers (how an HF pipeline usually does it). Persistent workers, a warm-up pass,
    # then timed passes over 4x the images (so that start-up and the last item's wait weigh little).
    from torch.utils.data import DataLoader
    w, V = workers, 6
    groups = [paths[i:i+V] for i in range(0, len(paths) - V + 1, V)]*4
    dl_pipes = {'clip_vlm (load_view + clip_pixels)': (_views_draft, _main_clip_pixels),
                'full decode + resize (+ clip_pixels)': (_views_full, _main_clip_pixels),
                'CLIPImageProcessor (stock: short side 224, crop 224x224)': (_hf_views, None),
                'CLIPImageProcessor (asked for 224x392, no crop)': (_hf_matched_views, None)}
    if full: dl_pipes['clip_vlm, normalised in the workers (float32 crosses the process boundary)'] = (_ours_views, None)
    wr = {k: [] for k in dl_pipes}
    loaders = {k: DataLoader(_Images(groups, f), batch_size=None, num_workers=w, persistent_workers=True, prefetch_factor=4)
               for k, (f, _) in dl_pipes.items()}
    def epoch(k):
        g = dl_pipes[k][1]
        for x in loaders[k]:
            if g is not None: g(x)
    for k in loaders: epoch(k)
    for r in range(repeats):
        for k in loaders:
            t = time.perf_counter(); epoch(k)
            wr[k].append(V*len(groups)/(time.perf_counter() - t))
        log(f"image: DataLoader {w} workers{tag}, repeat {r+1}/{repeats}: " + ', '.join(f'{v[-1]:.0f}/s' for v in wr.values()))
    del loaders
    notes = {'clip_vlm (load_view + clip_pixels)': 'as fit() does it: uint8 views from the workers, clip_pixels in the main process',
             'clip_vlm, normalised in the workers (float32 crosses the process boundary)': '4x the bytes per view through shared memory'}
    out += _image_rows(wr, f'DataLoader {w} workers, 6 views per item{tag}',
                       extra=lambda k: dict(note=notes.get(k), speedup_vs_1_process=median(wr[k])/median(rates[k]) if k in rates else None))
    return out

def _views_draft(paths):
    from clip_vlm.model import load_views
    return load_views(paths)

def _views_full(paths):
    import numpy as np
    from clip_vlm.model import load_view
    return np.stack([load_view(p, draft=False) for p in paths])

def _main_clip_pixels(views):
    from clip_vlm.model import clip_pixels
    return clip_pixels(views, _proc())

def _hf_views(paths):
    import torch
    return torch.cat([_hf(p) for p in paths])

def _hf_matched_views(paths):
    import torch
    return torch.cat([_hf_matched(p) for p in paths])

def _ours_views(paths):
    return _main_clip_pixels(_views_draft(paths))

# ----------------------------------------------------------------------------------------------------------------
# 3. sample index

GEN = r'''
import json, sys, time
from pathlib import Path
from clip_vlm.sample import make_nuscenes
root, n, k = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
t = time.perf_counter()
make_nuscenes(root, 'v1.0-trainval', n_scenes=n, samples_per_scene=k, images=False, seed=0)
print(json.dumps(dict(seconds=time.perf_counter()-t)))
'''

# Peak memory of a child: VmHWM (peak RSS of this process image) from /proc. Not ru_maxrss: after fork + exec Linux keeps
# the forking parent's RSS in it, so a child of a big parent would report at least the parent's size.
PEAK = r"""
def peak_kib():
    try:
        with open('/proc/self/status') as f:
            for l in f:
                if l.startswith('VmHWM:'): return int(l.split()[1])
    except OSError: pass
    import resource; return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
"""

INDEX = PEAK + r'''
import json, sys, time
t0 = time.perf_counter()
import clip_vlm.data as D
t1 = time.perf_counter()
rss0 = peak_kib()
what, root, version, cache = sys.argv[1:5]
n = None
if what == 'index':
    n = len(D.nusc_index(root, version, cache_dir=cache))
elif what == 'samples':
    s = D.nuscenes_samples(root, version, mode='distill', split='train', require_files=True, cache_dir=cache)
    n = s.summary['in_split']
t2 = time.perf_counter()
print(json.dumps(dict(import_s=t1-t0, seconds=t2-t1, n=n, maxrss_kib=peak_kib(),
                      import_maxrss_kib=rss0, devkit_loads=D.nusc_index.devkit_loads)))
'''

def trainval_metadata(a) -> Path:
    "nuScenes trainval-sized metadata without images (generated once into bench/.cache, reused)."
    n, k = (100, 40) if a.quick else (850, 40)
    root = a.cache/f'nusc-trainval-{n}x{k}'
    done = root/'.complete'
    if not done.exists():
        if root.exists(): shutil.rmtree(root)
        log(f"index: generating trainval-sized metadata ({n} scenes x {k} samples, no images) in {root} (once) ...")
        r = child(GEN, root, n, k)
        # make_nuscenes(images=False) writes no samples/ or sweeps/, but nusc_index (check_nusc_root) requires both
        # folders: add them empty, as a metadata-only download would have them (reported to the lead)
        for d in ('samples', 'sweeps'): (root/d).mkdir(exist_ok=True)
        done.write_text(json.dumps(dict(n_scenes=n, samples_per_scene=k, seconds=r['seconds'])))
        log(f"index: generated in {r['seconds']:.0f} s")
    return root

def bench_index(a) -> list:
    root = trainval_metadata(a)
    meta = json.loads((root/'.complete').read_text())
    ver = root/'v1.0-trainval'
    size = sum(f.stat().st_size for f in ver.glob('*.json'))
    with open(ver/'sample_data.json', 'rb') as f: n_sd = sum(1 for l in f if l.startswith(b'{'))
    log(f"index: {size/2**30:.2f} GiB of metadata, {n_sd:,} sample_data rows")
    out = [row('index', 'metadata (generated, images=False)', size/2**30, 'GiB',
               note=f"{meta['n_scenes']} scenes x {meta['samples_per_scene']} samples, {n_sd:,} sample_data rows, "
                    f"generated in {meta['seconds']:.0f} s")]
    base = child(PEAK + r'''
import json
import clip_vlm.data
print(json.dumps(dict(maxrss_kib=peak_kib())))''')
    with tempfile.TemporaryDirectory(dir=a.cache) as cd:
        log("index: devkit build (cold cache; runs once) ...")
        dk = child(INDEX, 'index', root, 'v1.0-trainval', cd)
        assert dk['devkit_loads'] == 1, dk
        log(f"index: devkit {dk['seconds']:.1f} s, peak RSS {dk['maxrss_kib']/2**20:.2f} GiB")
        cached = []
        for r in range(a.repeats):
            c = child(INDEX, 'index', root, 'v1.0-trainval', cd)
            assert c['devkit_loads'] == 0 and c['n'] == dk['n'], c
            cached.append(c)
            log(f"index: cached {c['seconds']:.2f} s, peak RSS {c['maxrss_kib']/2**10:.0f} MiB")
        samp = child(INDEX, 'samples', root, 'v1.0-trainval', cd)
        cache_file = next(Path(cd).rglob('*.json'))
        cache_mb = cache_file.stat().st_size/2**20
    cs, cm = median([c['seconds'] for c in cached]), median([c['maxrss_kib'] for c in cached])
    gib = lambda kib: kib/2**20
    out += [row('index', f"devkit (NuScenes(), cold cache; {dk['n']:,} samples; repeats=1)", dk['seconds'], 's',
                note=f"includes writing the {cache_mb:.0f} MB cache; run once: it takes ~1 min and GBs",
                peak_rss_gib=gib(dk['maxrss_kib'])),
            row('index', 'devkit peak memory (child peak RSS, VmHWM)', gib(dk['maxrss_kib']), 'GiB', values=[gib(dk['maxrss_kib'])]),
            row('index', f"cached index (nusc_index, warm; {a.repeats} fresh processes)", cs, 's',
                values=[c['seconds'] for c in cached], ratio=dk['seconds']/cs, ratio_to='faster than devkit by',
                target='< 2 s', ok=cs < 2),
            row('index', 'cached index peak memory (child peak RSS, VmHWM)', gib(cm), 'GiB', values=[gib(c['maxrss_kib']) for c in cached],
                ratio=dk['maxrss_kib']/cm, ratio_to='less than devkit by', target='< 1/10 of devkit', ok=cm < dk['maxrss_kib']/10,
                note=f"python + clip_vlm.data alone: {base['maxrss_kib']/2**10:.0f} MiB"),
            row('index', "nuscenes_samples(split='train', require_files) from the cached index", samp['seconds'], 's',
                note=f"{samp['n']:,} samples in the split, one stat() each (no images here, all dropped); "
                     f"peak RSS {samp['maxrss_kib']/2**10:.0f} MiB", peak_rss_gib=gib(samp['maxrss_kib'])),
            row('index', 'import clip_vlm.data (cached runs)', median([c['import_s'] for c in cached]), 's')]
    return out

# ----------------------------------------------------------------------------------------------------------------
# random-weight models (small for the CPU sections, real-size for the GPU one), saved and loaded like hub ids

# "small": bigger than clip_vlm.tiny's, far smaller than the real models (CLIP 256 wide x 6 layers, Qwen vision 128 x 4)
SMALL = dict(
    clip=dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=4, image_size=224,
              patch_size=14, num_channels=3, hidden_act='quick_gelu', projection_dim=256),
    qwen=dict(model_type='qwen2_5_vl', tie_word_embeddings=False,
              text_config=dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
                               num_key_value_heads=2, hidden_act='silu', max_position_embeddings=4096, rms_norm_eps=1e-6,
                               rope_parameters=dict(rope_type='default', rope_theta=1e6, mrope_section=[8, 12, 12])),
              vision_config=dict(depth=4, hidden_size=128, intermediate_size=384, num_heads=4, out_hidden_size=256,
                                 hidden_act='silu', in_channels=3, patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
                                 window_size=112, fullatt_block_indexes=[3], tokens_per_second=2)))

def real_spec() -> dict:
    "CLIP ViT-L/14 + Qwen2.5-VL-3B, from clip_vlm.model.REAL_CONFIGS (the values of their config.json files)."
    from clip_vlm.model import REAL_CONFIGS
    return dict(clip=dict(REAL_CONFIGS['clip_vit_l14']), qwen=json.loads(json.dumps(REAL_CONFIGS['qwen2_5_vl_3b'])))

def build_models(folder:Path, spec:dict, seed:int=0, device='cpu', dtype=None) -> dict:
    "Random-weight CLIP vision + Qwen-VL built from configs (nothing downloaded), saved as folders that load like hub ids."
    import torch, hashlib
    key = hashlib.sha1(json.dumps(dict(spec=spec, seed=seed, dtype=str(dtype)), sort_keys=True).encode()).hexdigest()[:10]
    folder = Path(folder)/key
    paths = {'clip': folder/'clip', 'qwen': folder/'qwen'}
    if (folder/'done.json').exists(): return paths
    from transformers import (CLIPVisionConfig, CLIPVisionModel, Qwen2VLConfig, Qwen2VLForConditionalGeneration,
                              Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, GenerationConfig)
    from clip_vlm.tiny import make_tokenizer, qwen_image_processor, clip_image_processor, _qwen_ids
    if folder.exists(): shutil.rmtree(folder)
    folder.mkdir(parents=True)
    tok = make_tokenizer()
    eot, eos = tok.convert_tokens_to_ids('<|endoftext|>'), tok.convert_tokens_to_ids('<|im_end|>')
    q = json.loads(json.dumps(spec['qwen']))
    Config, Model = dict(qwen2_vl=(Qwen2VLConfig, Qwen2VLForConditionalGeneration),
                         qwen2_5_vl=(Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration))[q.pop('model_type')]
    text = q.pop('text_config')
    text.setdefault('vocab_size', -(-len(tok)//64)*64)  # the real config keeps its 151,936 (the tokenizer's ids fit)
    text.update(bos_token_id=eot, eos_token_id=eos, pad_token_id=eot)
    qcfg = Config(text_config=text, **q, **_qwen_ids(tok))
    dt = dtype or torch.float32
    t = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with torch.device(device):
            clip = CLIPVisionModel._from_config(CLIPVisionConfig(**spec['clip']), dtype=dt)
            qwen = Model._from_config(qcfg, dtype=dt)
    qwen.generation_config = GenerationConfig(bos_token_id=eot, eos_token_id=[eos, eot], pad_token_id=eot, do_sample=False)
    log(f"models: built {sum(p.numel() for p in clip.parameters())/1e6:.0f}M + {sum(p.numel() for p in qwen.parameters())/1e6:.0f}M "
        f"parameters on {device} in {time.perf_counter()-t:.0f} s; saving to {folder}")
    clip.save_pretrained(paths['clip']); clip_image_processor().save_pretrained(paths['clip'])
    qwen.save_pretrained(paths['qwen']); tok.save_pretrained(paths['qwen']); qwen_image_processor().save_pretrained(paths['qwen'])
    del clip, qwen
    (folder/'done.json').write_text(json.dumps(dict(spec=spec, seed=seed, dtype=str(dtype))))
    return paths

def sample_data(a) -> dict:
    "The sample nuScenes tree (4 scenes x 5 samples, real 1600x900 JPEGs) with a caption for every sample; made once."
    root = a.cache/'sample-nusc'
    if not (root/'.complete').exists():
        from clip_vlm.sample import make_nuscenes, make_captions
        if root.exists(): shutil.rmtree(root)
        log(f"data: generating the sample nuScenes tree in {root} (once) ...")
        make_nuscenes(root/'nuscenes', n_scenes=4, samples_per_scene=5, image_size=(1600, 900))
        make_captions(root/'captions.json', root/'nuscenes', frac=1.0, n_foreign=0)
        (root/'.complete').write_text('ok')
    return dict(nusc_root=str(root/'nuscenes'), captions=str(root/'captions.json'), version='v1.0-mini')

TRAIN = PEAK + r"""
import json, sys, time, warnings
warnings.filterwarnings('ignore')
import tqdm.auto as ta
marks, _T = [], ta.tqdm
class Timed(_T):  # fit wraps each epoch's data loader in tqdm (desc 'MODE epoch i/n'): time every such pass
    def __init__(self, *a, **k):
        self._bench_desc = str(k.get('desc', ''))
        super().__init__(*a, **k)
    def __iter__(self):
        t = time.perf_counter()
        yield from super().__iter__()
        if ' epoch ' in self._bench_desc: marks.append(time.perf_counter() - t)
ta.tqdm = Timed
kw = json.loads(sys.argv[1])
t0 = time.perf_counter()
import os, torch
if os.environ.get('BENCH_THREADS'): torch.set_num_threads(int(os.environ['BENCH_THREADS']))
from clip_vlm.train import fit
from clip_vlm.export import build_samples
n = len(build_samples(dataset='nuscenes', nusc_root=kw['nusc_root'], version=kw['version'], captions=kw.get('captions'),
                      mode=kw['mode'], cache_dir=kw.get('cache_dir')))
_, hist = fit(progress=False, **kw)
ep = [h for h in hist if h['kind'] == 'epoch']
assert len(marks) == len(ep), (marks, ep)
print(json.dumps(dict(epoch_s=marks, n=n, wall_s=time.perf_counter() - t0, threads=torch.get_num_threads(),
                      loss=[h['loss'] for h in ep], computed=[h['frozen_views_computed'] for h in ep],
                      maxrss_kib=peak_kib())))
"""

def run_fit(a, models, data, env=None, **kw) -> dict:
    "One `fit` in a fresh process: per-epoch seconds (each pass over the data), samples, peak RSS."
    kw = dict(dataset='nuscenes', clip_model=str(models['clip']), qwen_model=str(models['qwen']), lr=1e-4, seed=0,
              **data, **kw)
    e = dict(CLIP_VLM_CACHE=str(a.cache/'clip_vlm_cache'), **(env or {}))
    return child(TRAIN, json.dumps(kw), env=e)

def bench_cache(a) -> list:
    models, data = build_models(a.cache/'models', SMALL), sample_data(a)
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

def bench_train(a) -> list:
    models, data = build_models(a.cache/'models', SMALL), sample_data(a)
    E = 1 + (2 if a.quick else 3)
    configs = [('distill', {}), ('lm', {}), ('lm + LoRA r16', dict(use_lora=True, lora_r=16, lora_alpha=32))]
    out = []
    for name, extra in configs:
        for b in (1, 4):
            with tempfile.TemporaryDirectory(dir=a.cache) as cd:
                x = run_fit(a, models, data, mode=name.split()[0], epochs=E, batch_size=b, cache_dir=cd, **extra)
            n = x['n']
            warm = [n/s for s in x['epoch_s'][1:]]
            log(f"train: {name} batch {b}: epoch 1 {n/x['epoch_s'][0]:.2f}/s, later {', '.join(f'{v:.2f}' for v in warm)}/s, "
                f"peak RSS {x['maxrss_kib']/2**20:.2f} GiB")
            out.append(row('train', f'{name}, batch {b}: samples/s, warm feature cache (epochs 2-{E})', median(warm),
                           'samples/s', values=warm, note=f"epoch 1 (cold cache) {n/x['epoch_s'][0]:.2f} samples/s; "
                           f"loss {x['loss'][0]:.3f} -> {x['loss'][-1]:.3f}", cold_samples_per_s=n/x['epoch_s'][0]))
            out.append(row('train', f'{name}, batch {b}: peak memory (child peak RSS, VmHWM, whole run)',
                           x['maxrss_kib']/2**20, 'GiB'))
    return out

# ----------------------------------------------------------------------------------------------------------------
# 5. GPU: real-size models (random weights), bf16, 6 views; samples/s, model FLOP utilisation, peak memory
#
# FLOPs are counted analytically, per sample, from the models' own layer shapes (matmul weights counted on meta-device
# copies built from the same configs) and the token counts:
#   a matmul with P weights applied to T tokens costs 2*P*T forward;
#   a frozen module on the gradient path (Qwen's LLM in lm mode) costs another 2*P*T backward (input gradients only);
#   a trainable module (the connector) costs 6*P*T (forward, input gradients, weight gradients);
#   attention costs 4*T^2*d per layer forward (Q K^T and A V, full square, no causal halving, as in PaLM's MFU), x3 with
#   its backward; the Qwen vision tower's windowed layers count each window's square, its 4 full layers the whole view.
# Tokens: CLIP 448 patches + CLS per 224x392 view; Qwen vision tower 448 patches, its merger and the connector 112 per view
# (672 per sample); the LLM the padded sequence length of the batch (six 112-token image blocks, camera names, prompt,
# caption). Embedding look-ups, norms, softmax and optimizer updates are not counted. MFU = counted FLOPs / step time /
# the card's dense bf16 peak (989 TFLOP/s for H100 SXM and H200, 756 for H100 PCIe; --peak-tflops overrides).
# 4-bit runs are counted with the same FLOPs, so the cost of dequantising shows as a lower MFU.

PEAK_TFLOPS = (('H100 PCIe', 756), ('H100 NVL', 835), ('H100', 989), ('H200', 989), ('GH200', 989), ('A100', 312),
               ('L40S', 362), ('A10G', 70), ('L4', 121))
CAPTION = ('A white car is parked on the right next to the sidewalk, a pedestrian is crossing at the intersection ahead, '
           'and a bus is approaching in the next lane while the ego vehicle slows down behind a truck.')

def _meta_models(spec, vocab=None):
    "The CLIP and Qwen-VL of `spec` on the meta device (shapes only, no memory)."
    import torch
    from transformers import (CLIPVisionConfig, CLIPVisionModel, Qwen2VLConfig, Qwen2VLForConditionalGeneration,
                              Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration)
    q = json.loads(json.dumps(spec['qwen']))
    Config, Model = dict(qwen2_vl=(Qwen2VLConfig, Qwen2VLForConditionalGeneration),
                         qwen2_5_vl=(Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration))[q.pop('model_type')]
    if vocab: q['text_config']['vocab_size'] = vocab
    with torch.device('meta'):
        return CLIPVisionModel(CLIPVisionConfig(**spec['clip'])), Model(Config(**q))

def matmul_params(module) -> int:
    "Weights of the matmuls (Linear, Conv) in `module`."
    import torch.nn as nn
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.Conv3d)))

def flop_model(spec, geometry, connector, vocab=None) -> dict:
    "Per-view / per-token FLOP counts of the frozen towers, the connector and the LLM (see the comment above)."
    clip, qwen = _meta_models(spec, vocab)
    cc, vc, tc = clip.config, qwen.config.vision_config, qwen.config.text_config
    gh, gw = geometry['clip_grid']  # patches per view
    n = gh*gw
    T = geometry['tokens_per_view']
    vis = qwen.model.visual
    p_merger = matmul_params(vis.merger)
    p_vis = matmul_params(vis) - p_merger
    # windowed attention of the Qwen2.5-VL vision tower: windows of (window_size / patch) patches a side
    full_idx = set(getattr(vc, 'fullatt_block_indexes', None) or range(vc.depth))
    ws = (getattr(vc, 'window_size', 0) or 0)//vc.patch_size
    if ws:
        rows = [min(ws, gh - i) for i in range(0, gh, ws)]; cols = [min(ws, gw - j) for j in range(0, gw, ws)]
        win_sq = sum((r*c)**2 for r in rows for c in cols)
    else: win_sq = n*n
    hv = vc.hidden_size if spec['qwen']['model_type'] == 'qwen2_5_vl' else vc.embed_dim
    attn_vis = sum(4*(n*n if i in full_idx else win_sq)*hv for i in range(vc.depth))
    p_clip = matmul_params(clip)
    clip_view = 2*p_clip*(n + 1) + cc.num_hidden_layers*4*(n + 1)**2*cc.hidden_size
    teacher_view = 2*p_vis*n + 2*p_merger*T + attn_vis
    p_llm = matmul_params(qwen.model.language_model) + qwen.lm_head.weight.numel()
    p_con = matmul_params(connector)
    del clip, qwen
    return dict(p_clip=p_clip, p_vision=p_vis + p_merger, p_llm=p_llm, p_connector=p_con, clip_view=clip_view,
                teacher_view=teacher_view, llm_layers=tc.num_hidden_layers, d_llm=tc.hidden_size, tokens_per_view=T)

def step_flops(fm, mode, B, V, L=None) -> float:
    "Counted FLOPs of one training step on B samples of V views (L: padded LM length)."
    f = 6*fm['p_connector']*B*V*fm['tokens_per_view']
    if mode == 'lm':
        f += 4*fm['p_llm']*B*L + 3*fm['llm_layers']*4*B*L*L*fm['d_llm']
    return f

def bench_gpu(a) -> list:
    import gc, torch, numpy as np
    from clip_vlm.model import CLIPQwenVLM
    from clip_vlm.data import CAMERAS
    from clip_vlm.distill import distill_batch_loss
    from clip_vlm.train import lm_batch_loss
    dev = torch.device(a.gpu_device)
    cuda = dev.type == 'cuda'
    if cuda and not torch.cuda.is_available(): raise SystemExit('gpu: CUDA is not available (use --gpu-device cpu --gpu-size small for a dry run)')
    spec = real_spec() if a.gpu_size == 'real' else SMALL
    dtype = torch.bfloat16 if cuda else torch.float32
    name = torch.cuda.get_device_name(dev) if cuda else 'cpu'
    peak = a.peak_tflops or next((v for k, v in PEAK_TFLOPS if k in name), None) if cuda else None
    sync = (lambda: torch.cuda.synchronize(dev)) if cuda else (lambda: None)
    OOM = torch.cuda.OutOfMemoryError if cuda else MemoryError
    t_start = time.perf_counter()
    budget = a.gpu_budget
    batches = [1, 2] if a.quick or not cuda else [1, 4, 8]
    quants = ['none', 'bnb-4bit']
    steps, warm = (2, 1) if a.quick or not cuda else (5, 2)
    V = len(CAMERAS)
    log(f"gpu: {name}, peak {peak} TFLOP/s, models {a.gpu_size}, dtype {dtype}, batches {batches}, quant {quants}")
    out = []
    folder = Path(tempfile.mkdtemp(prefix='clip_vlm_bench_models_', dir=a.gpu_tmp))
    try:
        t = time.perf_counter()
        models = build_models(folder, spec, device=dev, dtype=dtype)
        if cuda: torch.cuda.empty_cache()
        out.append(row('gpu', f'build random {a.gpu_size}-size models from configs on {dev.type} and save', time.perf_counter() - t, 's',
                       note=f"{sum(f.stat().st_size for f in folder.rglob('*.safetensors'))/2**30:.1f} GiB of safetensors"))
        rng = np.random.default_rng(0)
        for quant in quants:
            if time.perf_counter() - t_start > budget: log(f"gpu: over the {budget} s budget, skipping {quant}"); break
            gc.collect()
            if cuda: torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats(dev)
            t = time.perf_counter()
            vlm = CLIPQwenVLM.build(models['clip'], models['qwen'], quant=quant, dtype=dtype, device=dev, seed=0)
            load_s = time.perf_counter() - t
            base_mem = torch.cuda.memory_allocated(dev)/2**30 if cuda else None
            fm = flop_model(spec, vlm.geometry, vlm.connector, getattr(vlm.qwen.config, 'text_config', vlm.qwen.config).vocab_size)
            out.append(row('gpu', f'load CLIP + Qwen (quant {quant}) through CLIPQwenVLM.build', load_s, 's',
                           note=None if base_mem is None else f'{base_mem:.1f} GiB on the GPU after loading',
                           params_m={k: round(v/1e6, 1) for k, v in fm.items() if k.startswith('p_')}))
            views = rng.integers(0, 256, (max(batches)*V, *vlm.image_size, 3), dtype=np.uint8)
            items = [vlm.lm_inputs(CAMERAS, CAPTION) for _ in range(max(batches))]
            for B in batches:
                if time.perf_counter() - t_start > budget: log(f"gpu: over the {budget} s budget, skipping"); break
                v = views[:B*V]
                def towers():
                    return vlm.clip_features(v), vlm.teacher(v)
                try:
                    if cuda: torch.cuda.reset_peak_memory_stats(dev)
                    ts = []
                    for i in range(warm + steps):
                        sync(); t = time.perf_counter(); c, te = towers(); sync()
                        if i >= warm: ts.append(time.perf_counter() - t)
                    m = median(ts); fl = B*V*(fm['clip_view'] + fm['teacher_view'])
                    mem = torch.cuda.max_memory_allocated(dev)/2**30 if cuda else None
                    out.append(_gpu_row(f'frozen towers (CLIP + teacher forward; epoch-1 work), quant {quant}, batch {B}',
                                        B, ts, fl, peak, mem))
                    log(f"gpu: towers {quant} b{B}: {B/m:.2f} samples/s")
                except OOM as e:
                    out.append(row('gpu', f'frozen towers, quant {quant}, batch {B}', None, 'OOM', note=str(e)[:120])); continue
                fl_list = [c[i*V:(i+1)*V] for i in range(B)]
                tl_list = [te[i*V:(i+1)*V] for i in range(B)]
                cams = [list(CAMERAS)]*B
                lmb = {k: x.to(dev) for k, x in vlm.collate(items[:B]).items()}
                L = lmb['input_ids'].shape[1]
                for mode in ('distill', 'lm'):
                    vlm.train()
                    opt = torch.optim.AdamW([p for p in vlm.parameters() if p.requires_grad], lr=1e-5)
                    def step():
                        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
                            if mode == 'distill': loss, _ = distill_batch_loss(vlm, fl_list, tl_list, cams)
                            else: loss, _ = lm_batch_loss(vlm, fl_list, lmb, cams)
                        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
                        return loss
                    try:
                        if cuda: torch.cuda.reset_peak_memory_stats(dev)
                        ts = []
                        for i in range(warm + steps):
                            sync(); t = time.perf_counter(); loss = step(); sync()
                            if i >= warm: ts.append(time.perf_counter() - t)
                        assert torch.isfinite(loss).item(), f'{mode} loss {loss.item()}'
                        mem = torch.cuda.max_memory_allocated(dev)/2**30 if cuda else None
                        out.append(_gpu_row(f'train {mode} (cached features), quant {quant}, batch {B}'
                                            + (f', LM length {L}' if mode == 'lm' else ''), B, ts, step_flops(fm, mode, B, V, L),
                                            peak, mem))
                        log(f"gpu: {mode} {quant} b{B}: {B/median(ts):.2f} samples/s, loss {loss.item():.3f}")
                    except OOM as e:
                        out.append(row('gpu', f'train {mode}, quant {quant}, batch {B}', None, 'OOM', note=str(e)[:120]))
                    del opt; vlm.zero_grad(set_to_none=True)
                    if cuda: torch.cuda.empty_cache()
                del c, te, fl_list, tl_list, lmb
            del vlm
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    out.append(row('gpu', 'whole GPU section (wall)', time.perf_counter() - t_start, 's', note=f'{name}; budget {budget} s'))
    return out

def _gpu_row(case, B, ts, flops, peak, mem):
    m = median(ts)
    tf = flops/m/1e12
    return row('gpu', case, B/m, 'samples/s', values=[B/t for t in ts], step_ms=1e3*m, tflops=tf,
               mfu=None if not peak else tf/peak, peak_mem_gib=mem, gflop_per_step=flops/1e9,
               note=f"{1e3*m:.0f} ms/step, {tf:.1f} TFLOP/s" + (f", MFU {100*tf/peak:.1f}%" if peak else '')
                    + (f", peak {mem:.1f} GiB" if mem is not None else ''))

# ----------------------------------------------------------------------------------------------------------------
# main

BENCH = {'image': bench_image, 'cache': bench_cache, 'index': bench_index, 'train': bench_train, 'gpu': bench_gpu}

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog='\n'.join(__doc__.split('\n')[1:]))
    p.add_argument('--only', default=None, help=f"comma-separated sections to run ({','.join(SECTIONS)}); default all "
                   "(gpu only when CUDA is present)")
    p.add_argument('--quick', action='store_true', help='small sizes and 2 repeats: a smoke test')
    p.add_argument('--repeats', type=int, default=None, help='timed repeats per case (median reported; default 5, --quick 2)')
    p.add_argument('--images', type=int, default=36, help='JPEGs per image-pipeline repeat')
    p.add_argument('--workers', type=int, default=2, help='DataLoader workers for the image section (fit runs with workers=0)')
    p.add_argument('--cache', type=Path, default=HERE/'.cache', help='folder for generated inputs (reused between runs)')
    p.add_argument('--json', type=Path, default=HERE/'results.json', help='results file (merged per section)')
    p.add_argument('--gpu-size', choices=('real', 'small'), default='real', help='gpu: real-size models (default) or the small ones')
    p.add_argument('--gpu-device', default='cuda', help="gpu: device ('cpu' with --gpu-size small is a dry run of the code path)")
    p.add_argument('--gpu-budget', type=float, default=420, help='gpu: stop starting new cases after this many seconds')
    p.add_argument('--gpu-tmp', default=None, help='gpu: folder for the temporary real-size model files (default: the system temp)')
    p.add_argument('--peak-tflops', type=float, default=None, help="gpu: the card's dense bf16 peak, for MFU (default: from its name)")
    p.add_argument('--threads', type=int, default=None, help='torch threads for the CPU sections (default: torch\'s own, one per core)')
    p.add_argument('--show', action='store_true', help='print the table of every section in --json and exit (runs nothing)')
    a = p.parse_args(argv)
    if a.show:
        res = json.loads(a.json.read_text())
        for k, v in res['sections'].items():
            print(f"\n### {k}: {v['date']}, {v['machine']['nproc']} cores, load {v['loadavg_before']} -> {v['loadavg_after']}, {v['seconds']} s\n")
            print(table(v['rows']))
        return
    a.repeats = a.repeats or (2 if a.quick else 5)
    only = [s.strip() for s in a.only.split(',')] if a.only else [s for s in SECTIONS if s != 'gpu' or _cuda()]
    bad = [s for s in only if s not in SECTIONS]
    if bad: p.error(f"--only: unknown section(s) {', '.join(bad)}; choose from {', '.join(SECTIONS)}")
    a.cache.mkdir(parents=True, exist_ok=True)
    if a.threads:
        import torch
        torch.set_num_threads(a.threads); os.environ['BENCH_THREADS'] = str(a.threads)
    info = machine()
    log(f"machine: {info['nproc']} cores, {info['cpu']}, {info['ram_gib']} GiB; load {loadavg()}")
    results = json.loads(a.json.read_text()) if a.json.exists() else {}
    results.setdefault('sections', {})
    all_rows = []
    for s in only:
        if s not in BENCH:
            log(f"{s}: not implemented yet"); continue
        la0, t0 = loadavg(), time.perf_counter()
        try: rows = BENCH[s](a)
        except Exception as e:  # one broken section must not lose the others' numbers
            import traceback; traceback.print_exc()
            rows = [row(s, 'FAILED', None, '-', note=f'{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}'[:300])]
        print(table(rows), flush=True)
        key = 'gpu (cpu dry run)' if s == 'gpu' and a.gpu_device == 'cpu' else s
        results['sections'][key] = dict(date=datetime.now(timezone.utc).isoformat(timespec='seconds'), machine=info,
                                      quick=a.quick, repeats=a.repeats, loadavg_before=la0, loadavg_after=loadavg(),
                                      seconds=round(time.perf_counter() - t0, 1), rows=rows)
        all_rows += rows
        tmp = a.json.with_suffix('.tmp')
        tmp.write_text(json.dumps(results, indent=1, default=str)); os.replace(tmp, a.json)
    if len(only) > 1: print('\nall sections:\n' + table(all_rows))
    missed = [r for r in all_rows if r.get('ok') is False]
    if missed: print('\nmissed: ' + '; '.join(f"{r['section']}: {r['case']} ({r['target']})" for r in missed))

def _cuda():
    import torch
    return torch.cuda.is_available()

if __name__ == '__main__':
    main()
