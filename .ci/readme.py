"""README.md from nbs/index.ipynb. `nbdev_readme` needs quarto; this writes the same text without it.

    python .ci/readme.py          # rewrite README.md
    python .ci/readme.py --check  # exit 1 if README.md is out of date with nbs/index.ipynb
"""
import json, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent

def render() -> str:
    nb = json.loads((root/'nbs'/'index.ipynb').read_text())
    out = []
    for c in nb['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] == 'markdown':
            if src.startswith('# '):  # title, then the `> summary` line as plain text
                lines = src.splitlines()
                rest = [l[1:].lstrip() if l.startswith('>') else l for l in lines[1:] if l.strip()]
                out.append(lines[0] + '\n\n' + '\n'.join(rest))
            else: out.append(src)
        elif c['cell_type'] == 'code' and not src.lstrip().startswith('#| hide'):
            out.append('```python\n' + src + '\n```')
    return '<!-- Generated from nbs/index.ipynb: edit the notebook, not this file. -->\n\n' + '\n\n'.join(out) + '\n'

if __name__ == '__main__':
    text, readme = render(), root/'README.md'
    if '--check' in sys.argv[1:]:
        if readme.read_text() != text: sys.exit('README.md is out of date with nbs/index.ipynb: run python .ci/readme.py')
    else: readme.write_text(text)
