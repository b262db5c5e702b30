"""Execute notebooks in place so their committed outputs show what a reader should see (figures, summaries).

Usage: python .ci/execute.py [nbs/NAME.ipynb ...]   (default: every notebook in nbs/)
       python .ci/execute.py --check [nbs/NAME.ipynb ...]   (only check the committed outputs; executes nothing)

Cells run top to bottom in nbs/ (the notebook's own folder, as on Colab or in Jupyter), `#| slow` cells included
(`#| gpu` cells only where CUDA is available).
Outputs of `#| hide` cells, warnings and progress bars (stderr) are dropped, temporary folders and the home folder are written as `<tmp>` and `~`,
and an output that still looks machine- or run-specific (a temporary name, a timing, free disk space) is reported as an error, because
committed outputs must be the same on every run. Run `nbdev_clean` afterwards (execution counts are cleared).
"""
import os, re, sys, tempfile
from pathlib import Path

os.environ.setdefault('OMP_NUM_THREADS', '1'); os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
os.environ.setdefault('HF_HUB_OFFLINE', '1'); os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
os.environ.setdefault('MPLBACKEND', 'module://matplotlib_inline.backend_inline')
from execnb.nbio import read_nb, write_nb
from execnb.shell import CaptureShell

NONDETERMINISTIC = re.compile(
    r'/tmp/|/var/folders/|\btmp[a-z0-9_]{8}\b'                       # temporary folders
    r'|\b\d+(\.\d+)? ?(s|ms|secs|seconds|min|minutes)\b(?! apart)'      # timings ("13 s", "in 2.5 s", "40 ms")
    r'|\d+(\.\d+)? ?(it|samples|steps)/s\b'                            # speeds
    r'|"free_bytes": \d|\bfree[ :=]+\d|\d(\.\d+)? ?[KMGT]i?B free\b')  # this machine's free disk space

_TMP = re.compile(re.escape(tempfile.gettempdir().rstrip('/')) + r'/[^/\s\'"]+')

def _sanitize(t:str) -> str:
    "Machine-specific paths in an output, written the same on every machine."
    return _TMP.sub('<tmp>', t).replace(str(Path.home()), '~')

def _clean(o:dict) -> dict:
    if 'text' in o: o['text'] = _sanitize(''.join(o['text']) if isinstance(o['text'], list) else o['text'])
    d = o.get('data') or {}
    for k in ('text/plain', 'text/markdown', 'text/html'):
        if k in d: d[k] = _sanitize(''.join(d[k]) if isinstance(d[k], list) else d[k])
    return o

def _text(o):
    t = o.get('text') or ''.join((o.get('data') or {}).get('text/plain', ''))
    return ''.join(t) if isinstance(t, list) else t

def _skip(cell) -> bool:
    "Skip `#| gpu` cells on a machine without a GPU (their committed outputs are then empty)."
    import torch
    return cell.cell_type == 'code' and bool(re.search(r'^#\|\s*gpu\b', cell.source, flags=re.M)) and not torch.cuda.is_available()

def execute(path:Path) -> list:
    "Run every cell of `path` in its folder and write the outputs back; the problems found."
    nb = read_nb(path)
    cwd = os.getcwd(); os.chdir(path.parent)
    try:
        sh = CaptureShell(path, mpl_format='png')  # plain PNG at the figure's own dpi: GitHub shows it, the file stays small
        sh.run_all(nb, exc_stop=True, preproc=_skip)
    finally: os.chdir(cwd)
    problems = []
    for i, c in enumerate(nb.cells):
        if c.cell_type != 'code': continue
        if re.search(r'^#\|\s*hide\b', c.source, flags=re.M): c['outputs'] = []; continue  # not part of the docs
        c['outputs'] = [_clean(o) for o in c.get('outputs', []) if not (o.get('output_type') == 'stream' and o.get('name') == 'stderr')]
        for o in c['outputs']:
            if NONDETERMINISTIC.search(_text(o)): problems.append(f"{path.name} cell {i}: {_text(o)[:120]!r}")
    write_nb(nb, path)
    return problems

def check(path:Path) -> list:
    "The committed outputs of `path` that look machine- or run-specific."
    nb = read_nb(path)
    return [f"{path.name} cell {i}: {_text(o)[:120]!r}" for i, c in enumerate(nb.cells) if c.cell_type == 'code'
            for o in c.get('outputs', []) if NONDETERMINISTIC.search(_text(o)) or '/root/' in _text(o)]

if __name__ == '__main__':
    args = [a for a in sys.argv[1:] if a != '--check']
    paths = [Path(p) for p in args] or sorted(Path('nbs').rglob('*.ipynb'))
    problems = [p for path in paths for p in (check(path) if '--check' in sys.argv else execute(path.absolute()))]
    for p in problems: print('nondeterministic output:', p)
    sys.exit(1 if problems else 0)
