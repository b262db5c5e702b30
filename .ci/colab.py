"""nbs/colab_training.ipynb from COLAB_TRAINING.md, so the walkthrough opens in Colab from GitHub (the README's badge).

COLAB_TRAINING.md stays the one source of the walkthrough: its prose becomes Markdown cells and every block meant for a
Colab cell (```python, or a block starting with `%%bash` or `!`) becomes a code cell; other blocks (commands for
another machine) stay in the prose. The notebook is marked `skip_exec` (it needs a GPU, Drive and the real models);
`nbs/tests/test_colab.ipynb` runs the walkthrough's `# colab-test` cells on the sample data instead.

    python .ci/colab.py          # rewrite nbs/colab_training.ipynb
    python .ci/colab.py --check  # exit 1 if it is out of date with COLAB_TRAINING.md
"""
import json, re, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
OUT = root/'nbs'/'colab_training.ipynb'

def _cell(kind, text, i):
    c = {'cell_type': kind, 'id': f'c{i:03d}', 'metadata': {}, 'source': text.strip('\n').splitlines(keepends=True)}
    if kind == 'code': c.update(execution_count=None, outputs=[])
    return c

def render() -> str:
    md = (root/'COLAB_TRAINING.md').read_text()
    cells, prose, pos = [], [], 0
    def flush():
        t = ''.join(prose).strip('\n')
        if t: cells.append(('markdown', t))
        prose.clear()
    for m in re.finditer(r'^```(\w*)\n(.*?)^```[ \t]*\n?', md, flags=re.S | re.M):
        prose.append(md[pos:m.start()]); pos = m.end()
        lang, body = m.group(1), m.group(2)
        first = body.lstrip().split('\n', 1)[0]
        if lang == 'python' or first.startswith('%%bash') or first.startswith('!'):
            flush(); cells.append(('code', body))
        else: prose.append(m.group(0))
    prose.append(md[pos:]); flush()
    nb = dict(cells=[_cell('raw', '---\nskip_exec: true\n---', 0)] + [_cell(k, t, i + 1) for i, (k, t) in enumerate(cells)],
              metadata={'kernelspec': {'display_name': 'python3', 'language': 'python', 'name': 'python3'}},
              nbformat=4, nbformat_minor=5)
    return json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + '\n'

if __name__ == '__main__':
    text = render()
    if '--check' in sys.argv[1:]:
        if not OUT.is_file() or OUT.read_text() != text: sys.exit('nbs/colab_training.ipynb is out of date with COLAB_TRAINING.md: run python .ci/colab.py')
    else: OUT.write_text(text)
