"""Check the shape of the package: the import graph (lazy imports inside functions included) has no circle, no
module is over 600 lines, the exported cells of the reading notebooks are small, and no notebook uses a name that
a later notebook defines (the fixtures of 10_synthetic and 11_tiny excepted).

Usage: python .ci/structure.py [--graph]   (exit status 1 when a rule is broken; --graph prints every edge)
"""
import ast, json, re, statistics, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIB, NBS = ROOT/'clip_vlm', ROOT/'nbs'
MAX_LINES, MAX_MEDIAN_CELL = 600, 12
FIXTURES = ('synthetic', 'tiny')  # sample data and tiny models: every notebook may use them

def imports(path:Path) -> set:
    "The clip_vlm modules `path` imports anywhere in it (top level or inside a function)."
    out = set()
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.ImportFrom):
            if n.level == 1 and n.module: out.add(n.module.split('.')[0])
            elif n.level == 1: out.update(a.name for a in n.names)
            elif n.module and n.module.startswith('clip_vlm.'): out.add(n.module.split('.')[1])
        elif isinstance(n, ast.Import):
            out.update(a.name.split('.')[1] for a in n.names if a.name.startswith('clip_vlm.'))
    return out

def graph() -> dict:
    mods = {p.stem: p for p in LIB.glob('*.py') if not p.stem.startswith('_')}
    return {m: sorted(imports(p) & set(mods) - {m}) for m, p in sorted(mods.items())}

def cycles(g:dict) -> list:
    "Every circle of the graph, each once, as a list of modules."
    found, state = [], {}
    def visit(m, stack):
        state[m] = 1; stack.append(m)
        for n in g.get(m, ()):
            if state.get(n) == 1: found.append(stack[stack.index(n):] + [n])
            elif not state.get(n): visit(n, stack)
        stack.pop(); state[m] = 2
    for m in g:
        if not state.get(m): visit(m, [])
    return found

def notebook_module(nb:dict):
    for c in nb['cells']:
        m = re.search(r'^#\|\s*default_exp\s+(\S+)', ''.join(c['source']), re.M)
        if m: return m.group(1)

def exported_cells(nb:dict) -> list:
    "Line counts of the exported cells (without their `#|` directives)."
    return [len([l for l in ''.join(c['source']).splitlines() if not l.startswith('#|')])
            for c in nb['cells'] if c['cell_type'] == 'code' and re.search(r'^#\|\s*export\b', ''.join(c['source']), re.M)]

def main(show_graph=False) -> int:
    problems = []
    g = graph()
    if show_graph:
        for m, deps in g.items(): print(f"{m:12s} -> {', '.join(deps) or '-'}")
    for c in cycles(g): problems.append('import circle: ' + ' -> '.join(c))
    for p in sorted(LIB.glob('*.py')):
        n = len(p.read_text().splitlines())
        if n > MAX_LINES and not p.name.startswith('_'): problems.append(f"{p.relative_to(ROOT)}: {n} lines (at most {MAX_LINES})")
    nbs = sorted(p for p in NBS.glob('*.ipynb'))  # nbdev's order: by name
    order = {}
    for i, p in enumerate(nbs):
        m = notebook_module(json.loads(p.read_text()))
        if m: order[m] = (i, p.name)
    reading = [p for p in nbs if re.match(r'0\d_', p.name)]
    sizes = [n for p in reading for n in exported_cells(json.loads(p.read_text()))]
    med = statistics.median(sizes) if sizes else 0
    print(f"{len(g)} modules, {sum(len(d) for d in g.values())} imports, no circle" if not cycles(g) else '')
    print(f"exported cells of {len(reading)} reading notebooks: {len(sizes)}, median {med} lines")
    if med > MAX_MEDIAN_CELL: problems.append(f"median exported cell {med} lines (at most {MAX_MEDIAN_CELL})")
    for i, p in enumerate(nbs):
        text = ''.join(''.join(c['source']) for c in json.loads(p.read_text())['cells'] if c['cell_type'] == 'code')
        used = re.findall(r'(?:from|import)\s+clip_vlm\.(\w+)|[\'"]clip_vlm\.(\w+)\.\w+[\'"]', text)
        for m in {a or b for a, b in used} - set(FIXTURES):
            if m in order and order[m][0] > i: problems.append(f"{p.name} uses clip_vlm.{m}, defined later in {order[m][1]}")
    for pr in problems: print('structure:', pr)
    return 1 if problems else 0

if __name__ == '__main__': sys.exit(main('--graph' in sys.argv))
