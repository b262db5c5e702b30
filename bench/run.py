#!/usr/bin/env python
"""clip_vlm benchmarks: speed and memory, measured side by side in one run.

    python bench/run.py                      # every CPU section (gpu runs too when CUDA is present)
    python bench/run.py --only image,index   # some sections
    python bench/run.py --quick              # small sizes, 2 repeats: a smoke test (a few minutes; to bench/.cache/quick.json)
    python bench/run.py --only gpu           # the real-size GPU section (random weights; needs CUDA)
    python -m bench.run --quick              # the same, as a module

Sections, one module each in bench/: image (preprocessing images/s), cache (distill epochs with --cache-dir), index
(sample index time/memory), train (CPU samples/s and peak memory per mode), speed (attention calls per vision-tower
forward, its time, lm-step peak memory: stock against ours), longrun (feature cache layout before/after, content hash
vs decode, --dry-run estimate on trainval metadata, step-checkpoint write time), gpu (real-size models, bf16, MFU). Every
number is a median over `--repeats` runs; ratios are between medians measured in the same run. Results go to
bench/results.json (merged: sections not run keep their previous numbers) and a table is printed. Generated inputs
(JPEGs, trainval-sized metadata, small random models) are cached under bench/.cache (git-ignored) and reused.
"""
from __future__ import annotations
import argparse, json, os, sys, time
from pathlib import Path

if __package__ in (None, ''):  # `python bench/run.py`: import the bench package from the repository root, not bench/
    _repo = str(Path(__file__).resolve().parent.parent)
    sys.path[:] = [_repo] + [p for p in sys.path if Path(p or '.').resolve() != Path(__file__).resolve().parent]

from bench.common import HERE, log, row, table, machine, loadavg, read_results, record
from bench import image, cache, index, train, speed, longrun, gpu

SECTIONS = {'image': image.bench, 'cache': cache.bench, 'index': index.bench, 'train': train.bench, 'speed': speed.bench,
            'longrun': longrun.bench, 'gpu': gpu.bench}

def _cuda():
    import torch
    return torch.cuda.is_available()

def parser():
    d = __doc__.strip().split('\n')
    p = argparse.ArgumentParser(prog='python bench/run.py', description=d[0], epilog='\n'.join(d[1:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--only', default=None, help=f"comma-separated sections to run ({','.join(SECTIONS)}); default all "
                   "(gpu only when CUDA is present)")
    p.add_argument('--quick', action='store_true', help='small sizes and 2 repeats: a smoke test')
    p.add_argument('--repeats', type=int, default=None, help='timed repeats per case (median reported; default 5, --quick 2)')
    p.add_argument('--images', type=int, default=36, help='JPEGs per image-pipeline repeat')
    p.add_argument('--workers', type=int, default=2, help='DataLoader workers for the image section (fit runs with workers=0)')
    p.add_argument('--cache', type=Path, default=HERE/'.cache', help='folder for generated inputs (reused between runs)')
    p.add_argument('--json', type=Path, default=None, help='results file, merged per section (default bench/results.json; '
                   'with --quick bench/.cache/quick.json, so that a smoke test never replaces the recorded numbers)')
    p.add_argument('--gpu-size', choices=('real', 'small'), default='real', help='gpu: real-size models (default) or the small ones')
    p.add_argument('--gpu-device', default='cuda', help="gpu: device ('cpu' with --gpu-size small is a dry run of the code path)")
    p.add_argument('--gpu-budget', type=float, default=420, help='gpu: stop starting new cases after this many seconds')
    p.add_argument('--gpu-tmp', default=None, help='gpu: folder for the temporary real-size model files (default: the system temp)')
    p.add_argument('--gpu-compile', action='store_true', help='gpu: add torch.compile rows (frozen towers and an lm step at batch 8)')
    p.add_argument('--gpu-mem-gb', type=float, default=80, help='gpu: cap the allocator at this many GB (emulates an 80 GB card; 0: no cap)')
    p.add_argument('--peak-tflops', type=float, default=None, help="gpu: the card's dense bf16 peak, for MFU (default: from its name)")
    p.add_argument('--threads', type=int, default=None, help="torch threads for the CPU sections (default: torch's own, one per core)")
    p.add_argument('--show', action='store_true', help='print the table of every section in --json and exit (runs nothing)')
    return p

def show(path:Path):
    "Print the stored table of every section in the results file."
    for k, v in read_results(path)['sections'].items():
        print(f"\n### {k}: {v['date']}, {v['machine']['nproc']} cores, load {v['loadavg_before']} -> {v['loadavg_after']}, {v['seconds']} s\n")
        print(table(v['rows']))

def main(argv=None):
    p = parser()
    a = p.parse_args(argv)
    a.cache = a.cache.resolve()  # children run from the repository root
    a.json = (a.json or (a.cache/'quick.json' if a.quick else HERE/'results.json')).resolve()
    if a.show: return show(a.json)
    a.repeats = a.repeats or (2 if a.quick else 5)
    only = [s.strip() for s in a.only.split(',')] if a.only else [s for s in SECTIONS if s != 'gpu' or _cuda()]
    bad = [s for s in only if s not in SECTIONS]
    if bad: p.error(f"--only: unknown section(s) {', '.join(bad)}; choose from {', '.join(SECTIONS)}")
    a.cache.mkdir(parents=True, exist_ok=True)
    if a.threads:
        import torch
        torch.set_num_threads(a.threads)
    info = machine()
    log(f"machine: {info['nproc']} cores, {info['cpu']}, {info['ram_gib']} GiB; load {loadavg()}")
    results, all_rows = read_results(a.json), []
    for s in only:
        la0, t0 = loadavg(), time.perf_counter()
        try: rows = SECTIONS[s](a)
        except Exception as e:  # one broken section must not lose the others' numbers
            import traceback; traceback.print_exc()
            rows = [row(s, 'FAILED', None, '-', note=f'{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}'[:300])]
        print(table(rows), flush=True)
        key = 'gpu (cpu dry run)' if s == 'gpu' and a.gpu_device == 'cpu' else s
        record(results, a.json, key, rows, info=info, quick=a.quick, repeats=a.repeats, la0=la0, seconds=time.perf_counter() - t0)
        all_rows += rows
    if len(only) > 1: print('\nall sections:\n' + table(all_rows))
    missed = [r for r in all_rows if r.get('ok') is False]
    if missed: print('\nmissed: ' + '; '.join(f"{r['section']}: {r['case']} ({r['target']})" for r in missed))
    log(f"results: {a.json}")

if __name__ == '__main__': main()
