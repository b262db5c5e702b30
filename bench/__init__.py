"clip_vlm benchmarks: `python bench/run.py --help` (or `python -m bench.run`); one module per section."
