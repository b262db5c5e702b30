"""Image pipeline: images/s of clip_vlm's preprocessing (`load_view` + `clip_pixels`) against full decode + resize and
`CLIPImageProcessor`, in one process and through DataLoader workers; PSNR against full decode.

The timings run in fresh processes (`python -m bench.image timings JSON`), once per allocator setting."""
from __future__ import annotations
import json, os, time
from pathlib import Path
from .common import log, median, row, child, child_main

def make_jpegs(folder:Path, n:int, quality:int=90) -> list:
    "n realistic 1600x900 camera JPEGs (smooth structure + texture, like clip_vlm.synthetic's), made once."
    from clip_vlm.synthetic import camera_image, _noise_tile
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
    from clip_vlm.image import load_view, clip_pixels
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


def bench(a) -> list:
    "The image section's rows (`a`: the parsed command line of bench/run.py)."
    import numpy as np, torch, warnings
    from clip_vlm.image import load_view, IMAGE_SIZE
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
        out += child('image', 'timings', json.dumps(dict(paths=[str(p) for p in paths], repeats=a.repeats, workers=a.workers,
                                                         label=label, full=full)), env=env, stream_stderr=True)
    return out

# M_MMAP_THRESHOLD at its 64-bit maximum (32 MiB) and a high trim threshold: buffers of a few MB come from the heap
MALLOC_REUSE = dict(MALLOC_MMAP_THRESHOLD_=str(32*2**20), MALLOC_TRIM_THRESHOLD_=str(256*2**20))

def timings(paths, repeats:int, workers:int, label:str, full:bool=True) -> list:
    "Rows of images/s: decode + resize, whole pipelines in one process, and through DataLoader workers (run in a child)."
    paths = [Path(p) for p in paths]
    import torch, warnings
    from clip_vlm.image import load_view
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
                       ratio_to='load_view faster by', target='>= 3x', ok=r >= 3))
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
    from clip_vlm.image import load_views
    return load_views(paths)

def _views_full(paths):
    import numpy as np
    from clip_vlm.image import load_view
    return np.stack([load_view(p, draft=False) for p in paths])

def _main_clip_pixels(views):
    from clip_vlm.image import clip_pixels
    return clip_pixels(views, _proc())

def _hf_views(paths):
    import torch
    return torch.cat([_hf(p) for p in paths])

def _hf_matched_views(paths):
    import torch
    return torch.cat([_hf_matched(p) for p in paths])

def _ours_views(paths):
    return _main_clip_pixels(_views_draft(paths))

if __name__ == '__main__': child_main({'timings': timings})
