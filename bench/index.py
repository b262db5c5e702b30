"""Sample index: time and peak memory of `nusc_index` on trainval-sized metadata, cached against the devkit's cold build.

Every measurement runs in a fresh process (`python -m bench.index COMMAND JSON`): its time is the call alone (the import
is reported apart) and its memory the process's peak RSS."""
from __future__ import annotations
import json, shutil, tempfile, time
from pathlib import Path
from .common import log, median, row, child, child_main, peak_kib

# ---- run in the child processes

def generate(root:str, n_scenes:int, samples_per_scene:int) -> dict:
    "Write nuScenes trainval-format metadata without images; the seconds it took."
    from clip_vlm.synthetic import make_nuscenes
    t = time.perf_counter()
    make_nuscenes(Path(root), 'v1.0-trainval', n_scenes=n_scenes, samples_per_scene=samples_per_scene, images=False, seed=0)
    return dict(seconds=time.perf_counter() - t)

def measure(what:str, root:str, version:str, cache_dir:str) -> dict:
    "Time one `nusc_index` ('index') or `nuscenes_samples` ('samples') call; peak RSS; how often the devkit ran."
    t0 = time.perf_counter()
    import clip_vlm.data as D
    t1 = time.perf_counter()
    rss0 = peak_kib()
    from unittest import mock
    with mock.patch.object(D, '_build_index', wraps=D._build_index) as build:  # the devkit load, counted
        if what == 'index': n = len(D.nusc_index(nusc_root=root, version=version, cache_dir=cache_dir))
        elif what == 'samples':
            n = D.nuscenes_samples(nusc_root=root, version=version, mode='distill', split='train', require_files=True,
                                   cache_dir=cache_dir).summary['in_split']
        else: raise ValueError(f"what: 'index' or 'samples', not {what!r}")
        t2 = time.perf_counter()
    return dict(import_s=t1 - t0, seconds=t2 - t1, n=n, maxrss_kib=peak_kib(), import_maxrss_kib=rss0,
                devkit_loads=build.call_count)

def baseline() -> dict:
    "Peak RSS of a process that only imports clip_vlm.data (and this harness)."
    import clip_vlm.data
    from unittest import mock  # as `measure` does
    return dict(maxrss_kib=peak_kib())

# ---- the section, in the orchestrating process

def trainval_metadata(a) -> Path:
    "nuScenes trainval-sized metadata without images (generated once into bench/.cache, reused)."
    n, k = (100, 40) if a.quick else (850, 40)
    root = a.cache/f'nusc-trainval-{n}x{k}'
    done = root/'.complete'
    if not done.exists():
        if root.exists(): shutil.rmtree(root)
        log(f"index: generating trainval-sized metadata ({n} scenes x {k} samples, no images) in {root} (once) ...")
        r = child('index', 'generate', json.dumps(dict(root=str(root), n_scenes=n, samples_per_scene=k)))
        # make_nuscenes(images=False) writes no samples/ or sweeps/, but nusc_index (check_nusc_root) requires both
        # folders: add them empty, as a metadata-only download would have them
        for d in ('samples', 'sweeps'): (root/d).mkdir(exist_ok=True)
        done.write_text(json.dumps(dict(n_scenes=n, samples_per_scene=k, seconds=r['seconds'])))
        log(f"index: generated in {r['seconds']:.0f} s")
    return root

def index_child(what, root, cache_dir) -> dict:
    return child('index', 'measure', json.dumps(dict(what=what, root=str(root), version='v1.0-trainval', cache_dir=str(cache_dir))))

def bench(a) -> list:
    "The index section's rows (`a`: the parsed command line of bench/run.py)."
    root = trainval_metadata(a)
    meta = json.loads((root/'.complete').read_text())
    ver = root/'v1.0-trainval'
    size = sum(f.stat().st_size for f in ver.glob('*.json'))
    with open(ver/'sample_data.json', 'rb') as f: n_sd = sum(1 for l in f if l.startswith(b'{'))
    log(f"index: {size/2**30:.2f} GiB of metadata, {n_sd:,} sample_data rows")
    out = [row('index', 'metadata (generated, images=False)', size/2**30, 'GiB',
               note=f"{meta['n_scenes']} scenes x {meta['samples_per_scene']} samples, {n_sd:,} sample_data rows, "
                    f"generated in {meta['seconds']:.0f} s")]
    base = child('index', 'baseline', '{}')
    with tempfile.TemporaryDirectory(dir=a.cache) as cd:
        log("index: devkit build (cold cache; runs once) ...")
        dk = index_child('index', root, cd)
        assert dk['devkit_loads'] == 1, dk
        log(f"index: devkit {dk['seconds']:.1f} s, peak RSS {dk['maxrss_kib']/2**20:.2f} GiB")
        cached = []
        for r in range(a.repeats):
            c = index_child('index', root, cd)
            assert c['devkit_loads'] == 0 and c['n'] == dk['n'], c
            cached.append(c)
            log(f"index: cached {c['seconds']:.2f} s, peak RSS {c['maxrss_kib']/2**10:.0f} MiB")
        samp = index_child('samples', root, cd)
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
                note=f"python + clip_vlm.data (and the harness) alone: {base['maxrss_kib']/2**10:.0f} MiB"),
            row('index', "nuscenes_samples(split='train', require_files) from the cached index", samp['seconds'], 's',
                note=f"{samp['n']:,} samples in the split, one stat() each (no images here, all dropped); "
                     f"peak RSS {samp['maxrss_kib']/2**10:.0f} MiB", peak_rss_gib=gib(samp['maxrss_kib'])),
            row('index', 'import clip_vlm.data (cached runs)', median([c['import_s'] for c in cached]), 's')]
    return out

if __name__ == '__main__': child_main({'generate': generate, 'measure': measure, 'baseline': baseline})
