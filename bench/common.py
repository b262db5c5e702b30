"Shared by every section: medians, result rows and tables, machine info, fresh-process runs and the results file."
from __future__ import annotations
import json, math, os, sys
from pathlib import Path  # (kept light: the index section measures the import and memory of its children)

HERE = Path(__file__).resolve().parent  # bench/
REPO = HERE.parent
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
os.environ.setdefault('HF_HUB_OFFLINE', '1')  # nothing here may download
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')

def log(*a):
    "Progress goes to stderr; stdout carries the tables (and, in a child, its JSON result)."
    print(*a, file=sys.stderr, flush=True)

def median(xs):
    "The median (nan for none); no `statistics` import, so that children measured for memory stay light."
    xs = sorted(xs)
    if not xs: return float('nan')
    m = len(xs)//2
    return xs[m] if len(xs) % 2 else (xs[m - 1] + xs[m])/2

def loadavg(): return [round(x, 2) for x in os.getloadavg()]

def peak_kib() -> int:
    "Peak RSS of this process (VmHWM). Not ru_maxrss: after fork + exec Linux keeps the forking parent's RSS in it."
    try:
        with open('/proc/self/status') as f:
            for l in f:
                if l.startswith('VmHWM:'): return int(l.split()[1])
    except OSError: pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

def machine() -> dict:
    "What this machine is: cores, CPU model, RAM, library versions."
    import platform
    info = Path('/proc/cpuinfo').read_text().splitlines() if Path('/proc/cpuinfo').exists() else []
    cpu = next((l.split(':', 1)[1].strip() for l in info if l.startswith('model name')), platform.processor())
    flags = next((l for l in info if l.startswith('flags')), '')
    meminfo = Path('/proc/meminfo').read_text().splitlines() if Path('/proc/meminfo').exists() else []
    mem = next((int(l.split()[1]) for l in meminfo if l.startswith('MemTotal')), 0)
    import torch, PIL, PIL.features, transformers
    return dict(nproc=len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count(),
                cpu=cpu, avx512bf16='avx512_bf16' in flags, ram_gib=round(mem/2**20, 1), python=platform.python_version(),
                torch=torch.__version__, torch_threads=torch.get_num_threads(), transformers=transformers.__version__,
                pillow=PIL.__version__, libjpeg_turbo=PIL.features.version_feature('libjpeg_turbo'),
                cuda=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)

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

def child(module:str, *args, env=None, timeout=3600, stream_stderr=False):
    "Run `python -m bench.<module> *args` in a fresh process and return the JSON it prints last on stdout."
    import subprocess
    e = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get('PYTHONPATH', ''))
    e.update(env or {})
    p = subprocess.run([sys.executable, '-m', f'bench.{module}', *map(str, args)], stdout=subprocess.PIPE, cwd=REPO,
                       stderr=None if stream_stderr else subprocess.PIPE, text=True, env=e, timeout=timeout)
    if p.returncode:
        raise RuntimeError(f"bench.{module} {' '.join(map(str, args))[:200]} failed (exit {p.returncode}):\n{(p.stderr or '')[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])

def child_main(commands:dict, argv=None):
    "The `python -m bench.<module> COMMAND JSON` end of `child`: call `commands[COMMAND](**JSON)` and print its result."
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in commands:
        raise SystemExit(f"usage: python -m {sys.modules['__main__'].__spec__.name} {{{','.join(commands)}}} JSON_KWARGS "
                         "(run by bench/run.py in a fresh process)")
    print(json.dumps(commands[argv[0]](**json.loads(argv[1])), default=str), flush=True)

def read_results(path:Path) -> dict:
    "The results file (sections kept from earlier runs), or an empty one."
    res = json.loads(Path(path).read_text()) if Path(path).exists() else {}
    res.setdefault('sections', {})
    return res

def record(results:dict, path:Path, key:str, rows:list, *, info:dict, quick:bool, repeats:int, la0, seconds:float):
    "Store one section's rows (replacing its previous ones) and rewrite the results file atomically."
    from datetime import datetime, timezone
    results['sections'][key] = dict(date=datetime.now(timezone.utc).isoformat(timespec='seconds'), machine=info,
                                    quick=quick, repeats=repeats, loadavg_before=la0, loadavg_after=loadavg(),
                                    seconds=round(seconds, 1), rows=rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix('.tmp')
    tmp.write_text(json.dumps(results, indent=1, default=str))
    os.replace(tmp, path)
