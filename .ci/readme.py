"""README.md from nbs/index.ipynb. `nbdev_readme` needs quarto; this writes the same text without it.

Figures in the notebook's committed outputs (run `python .ci/execute.py nbs/index.ipynb` first) are written to
nbs/images/readme_N.png and shown in the README under the code that made them.

    python .ci/readme.py          # rewrite README.md and its figures
    python .ci/readme.py --check  # exit 1 if README.md or a figure is out of date with nbs/index.ipynb
"""
import base64, json, re, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
IMAGES = Path('nbs')/'images'

def render() -> tuple:
    "README text and `{path: png bytes}` of its figures."
    nb = json.loads((root/'nbs'/'index.ipynb').read_text())
    out, figs = [], {}
    for c in nb['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] == 'markdown':
            if src.startswith('# '):  # title, then the `> summary` line as plain text
                lines = src.splitlines()
                rest = [l[1:].lstrip() if l.startswith('>') else l for l in lines[1:] if l.strip()]
                out.append(lines[0] + '\n\n' + '\n'.join(rest))
            else: out.append(src)
        elif c['cell_type'] == 'code' and not src.lstrip().startswith('#| hide'):
            code = re.sub(r'^#\|.*\n', '', src, flags=re.M)
            out.append('```python\n' + code + '\n```')
            for o in c.get('outputs', []):
                png = (o.get('data') or {}).get('image/png')
                if png:
                    p = IMAGES/f'readme_{len(figs) + 1}.png'
                    figs[p] = base64.b64decode(''.join(png) if isinstance(png, list) else png)
                    out.append(f'![]({p.as_posix()})')
    return '<!-- Generated from nbs/index.ipynb: edit the notebook, not this file. -->\n\n' + '\n\n'.join(out) + '\n', figs

if __name__ == '__main__':
    (text, figs), readme = render(), root/'README.md'
    if '--check' in sys.argv[1:]:
        stale = [str(p) for p, b in figs.items() if not (root/p).is_file() or (root/p).read_bytes() != b]
        if readme.read_text() != text or stale:
            sys.exit('README.md or its figures are out of date with nbs/index.ipynb: run python .ci/readme.py')
    else:
        (root/IMAGES).mkdir(parents=True, exist_ok=True)
        for p, b in figs.items(): (root/p).write_bytes(b)
        readme.write_text(text)
