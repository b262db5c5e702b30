"""CPU: the GPU-speed changes, measured where they can be on a CPU, stock against ours side by side.

- attention calls per Qwen2.5-VL vision-tower forward for 8 samples x 6 views of 224x392 at the real tower's geometry
  (32 blocks, full attention in blocks 7/15/23/31, 112-pixel windows; a narrow width, since calls do not depend on it):
  stock `get_image_features` (one SDPA call per window) against `teacher_tokens` (one batched call per window length);
- the forward's time, same two paths, with a reduced-depth tower at the real width (1280, 16 heads);
- the peak memory of an lm step (forward + backward of `caption_ce`) at batch 8 with the real vocabulary (151,936)
  and a small hidden size: the full-logits loss against logits at the supervised positions only; each case in a fresh
  process, the peak as the rise of the process's peak RSS (VmHWM, reset through /proc/self/clear_refs) over the step.
"""
from __future__ import annotations
import json, time
from .common import log, median, row, child, child_main

CAPTION = ('A white car is parked on the right next to the sidewalk, a pedestrian is crossing at the intersection ahead, '
           'and a bus is approaching in the next lane while the ego vehicle slows down behind a truck.')

def _vision_qwen(width:int, heads:int, inter:int, depth:int, full:list, seed:int=0):
    "A Qwen2.5-VL with the real vision config except width/depth, and a 1-layer 64-wide LLM (only the tower runs)."
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration
    from clip_vlm.image import real_config
    from clip_vlm.model import freeze
    cfg = real_config('qwen2_5_vl_3b')
    cfg.vision_config.update(dict(hidden_size=width, num_heads=heads, intermediate_size=inter, depth=depth,
                                  fullatt_block_indexes=full, out_hidden_size=64))
    cfg.text_config.update(dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
                                num_key_value_heads=2, vocab_size=1024))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return freeze(Qwen2_5_VLForConditionalGeneration._from_config(cfg, dtype=torch.float32))

def _pixels(n_views:int, seed:int=0):
    "Qwen pixel values and grid for `n_views` random 224x392 views (Qwen's own layout, through `qwen_pixels`)."
    import numpy as np
    from clip_vlm.image import qwen_pixels
    from clip_vlm.tiny import qwen_image_processor
    views = np.random.default_rng(seed).integers(0, 256, (n_views, 224, 392, 3), dtype=np.uint8)
    return qwen_pixels(views, qwen_image_processor())

# ---- run in a child process: one lm step's peak memory

def lm_memory(path:str='ours', B:int=8, cameras:int=6, threads:int=None) -> dict:
    "Peak RSS rise (GiB) over one forward + backward of the lm loss at batch `B` with a 151,936-token vocabulary."
    import warnings; warnings.filterwarnings('ignore')
    import torch, torch.nn.functional as F
    if threads: torch.set_num_threads(threads)
    from transformers import AutoConfig, Qwen2_5_VLForConditionalGeneration, AutoTokenizer, AutoImageProcessor
    from clip_vlm.model import CLIPQwenVLM, Connector, caption_ce, load_clip, freeze
    from clip_vlm.image import check_geometry
    from clip_vlm.data import CAMERAS
    from clip_vlm.tiny import make_tiny_models
    tiny = make_tiny_models()
    clip, cproc = load_clip(tiny['clip'], device='cpu')
    cfg = AutoConfig.from_pretrained(tiny['qwen2_5_vl'])
    cfg.text_config.vocab_size = 151936  # the real vocabulary; hidden size 64
    torch.manual_seed(0)
    qwen = freeze(Qwen2_5_VLForConditionalGeneration._from_config(cfg, dtype=torch.float32))
    tok = AutoTokenizer.from_pretrained(tiny['qwen2_5_vl'])
    qproc = AutoImageProcessor.from_pretrained(tiny['qwen2_5_vl'], backend='pil')
    geo = check_geometry(clip.config, qwen.config)
    vlm = CLIPQwenVLM(clip, cproc, qwen, tok, qproc, Connector(geo.d_clip, geo.d_llm))
    cams = [list(CAMERAS[:cameras])]*B
    feats = [torch.randn(cameras, geo.clip_tokens, geo.d_clip) for _ in range(B)]
    batch = vlm.collate([vlm.lm_inputs(c, CAPTION) for c in cams])
    def full_logits_ce(model, feats, cameras, batch):  # the previous caption_ce: logits at every position
        logits = model(feats, cameras, lm_batch={k: v for k, v in batch.items() if k != 'labels'}).logits[:, :-1].float()
        labels = batch['labels'][:, 1:]
        ce = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction='none')
        n = (labels != -100).sum(1)
        return ce.sum(1)/n.clamp_min(1), n
    fn = caption_ce if path == 'ours' else full_logits_ce
    vlm.train()
    def status(k):
        for l in open('/proc/self/status'):
            if l.startswith(k): return int(l.split()[1])
    with open('/proc/self/clear_refs', 'w') as f: f.write('5')  # reset VmHWM to the current RSS
    rss0 = status('VmRSS:')
    t = time.perf_counter()
    loss, n = fn(vlm, feats, cams, batch)
    loss.mean().backward()
    sec = time.perf_counter() - t
    return dict(rise_gib=(status('VmHWM:') - rss0)/2**20, base_gib=rss0/2**20, seconds=sec, L=batch['input_ids'].shape[1],
                labelled=int(n.sum()), loss=float(loss.mean()))

# ---- the section, in the orchestrating process

def bench(a) -> list:
    "The speed section's rows (`a`: the parsed command line of bench/run.py)."
    import torch
    from clip_vlm.image_tower import teacher_tokens, count_sdpa
    out = []
    # 1. attention calls, real geometry and depth, narrow width
    B, V = (2, 6) if a.quick else (8, 6)
    q = _vision_qwen(width=64, heads=16, inter=64, depth=32, full=[7, 15, 23, 31])
    pv, thw = _pixels(B*V)
    with torch.no_grad():
        with count_sdpa() as cs: stock = teacher_tokens(q, pv, thw, batched=False)
        with count_sdpa() as co: ours = teacher_tokens(q, pv, thw)
    diff = float((stock - ours).abs().max())
    out.append(row('speed', f'attention calls per vision-tower forward, stock get_image_features, {B} samples x {V} views '
                   '224x392, Qwen2.5-VL-3B tower geometry (32 blocks, 4 full-attention)', cs.n, 'calls'))
    out.append(row('speed', f'attention calls per vision-tower forward, teacher_tokens (batched windows), same input', co.n, 'calls',
                   ratio=cs.n/co.n, ratio_to='fewer by', target='>= 100x fewer', ok=cs.n/co.n >= 100,
                   note=f'max |ours - stock| {diff:.2g} (width 64: calls do not depend on the width)'))
    log(f"speed: calls stock {cs.n}, ours {co.n}, diff {diff:.2g}")
    del q
    # 2. forward time, real width, reduced depth (3 windowed blocks + 1 full, as 28:4 in the real tower)
    Bt = 1  # 6 views: ~10 s per forward at 1 thread on this CPU
    q = _vision_qwen(width=1280, heads=16, inter=3420, depth=4, full=[3])
    pv, thw = _pixels(Bt*V, seed=1)
    ts, to = [], []
    with torch.no_grad():
        teacher_tokens(q, pv, thw)  # warm-up (and the geometry cache, as in training)
        for _ in range(min(a.repeats, 3)):  # interleaved
            t = time.perf_counter(); s = teacher_tokens(q, pv, thw, batched=False); ts.append(time.perf_counter() - t)
            t = time.perf_counter(); o = teacher_tokens(q, pv, thw); to.append(time.perf_counter() - t)
    diff = float((s - o).abs().max())
    out.append(row('speed', f'vision-tower forward, stock, real width (1280), 4 blocks (3 windowed + 1 full), {Bt} x {V} views',
                   median(ts), 's', values=ts))
    out.append(row('speed', f'vision-tower forward, teacher_tokens (batched windows), same', median(to), 's', values=to,
                   ratio=median(ts)/median(to), ratio_to='faster by',
                   note=f'max |ours - stock| {diff:.2g}; {torch.get_num_threads()} torch threads; on the CPU the matmuls '
                        'dominate, the calls saved matter on a GPU'))
    log(f"speed: forward stock {median(ts):.2f} s, ours {median(to):.2f} s")
    del q
    # 3. lm-step peak memory, fresh process each
    Bm, cams = (2, 2) if a.quick else (8, 6)
    mem = {}
    for path in ('full', 'ours'):
        mem[path] = child('speed', 'lm', json.dumps(dict(path=path, B=Bm, cameras=cams, threads=a.threads)))
        log(f"speed: lm step {path}: +{mem[path]['rise_gib']:.2f} GiB, {mem[path]['seconds']:.1f} s")
    f, o = mem['full'], mem['ours']
    same = abs(f['loss'] - o['loss']) < 1e-4
    out.append(row('speed', f'lm step peak memory (rise of peak RSS over forward + backward), full-vocabulary logits, batch {Bm}, '
                   f"{cams} views, LM length {f['L']}, vocabulary 151,936, hidden 64", f['rise_gib'], 'GiB', step_s=f['seconds']))
    out.append(row('speed', f"lm step peak memory, logits at the {o['labelled']} supervised positions only (caption_ce), same batch",
                   o['rise_gib'], 'GiB', ratio=f['rise_gib']/o['rise_gib'], ratio_to='less than stock by',
                   target='<= 1/3 of stock (>= 3x less)', ok=o['rise_gib'] <= f['rise_gib']/3, step_s=o['seconds'],
                   note=f"same loss: {f['loss']:.5f} vs {o['loss']:.5f} ({'equal' if same else 'DIFFERENT'}); "
                        f"step {f['seconds']:.1f} s -> {o['seconds']:.1f} s"))
    return out

if __name__ == '__main__': child_main({'lm': lm_memory})
