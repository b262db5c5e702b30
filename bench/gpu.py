"""GPU: real-size models (random weights), bf16, 6 views; samples/s, model FLOP utilisation and peak memory of the
frozen towers and of distill and lm training steps, for each quantisation and batch size.

Runs in the orchestrating process (`python bench/run.py --only gpu`); `--gpu-device cpu --gpu-size small` is a CPU dry
run of the same code path."""
from __future__ import annotations
import shutil, tempfile, time
from pathlib import Path
from .common import log, median, row
from .models import small_models, real_models

# FLOPs are counted analytically, per sample, from the models' own layer shapes (matmul weights counted on meta-device
# copies built from the same configs) and the token counts:
#   a matmul with P weights applied to T tokens costs 2*P*T forward;
#   a frozen module on the gradient path (Qwen's LLM in lm mode) costs another 2*P*T backward (input gradients only);
#   a trainable module (the connector) costs 6*P*T (forward, input gradients, weight gradients);
#   attention costs 4*T^2*d per layer forward (Q K^T and A V, full square, no causal halving, as in PaLM's MFU), x3 with
#   its backward; the Qwen vision tower's windowed layers count each window's square, its 4 full layers the whole view.
# Tokens: CLIP 448 patches + CLS per 224x392 view; Qwen vision tower 448 patches, its merger and the connector 112 per view
# (672 per sample); the LLM the padded sequence length of the batch (six 112-token image blocks, camera names, prompt,
# caption). Embedding look-ups, norms, softmax and optimizer updates are not counted. MFU = counted FLOPs / step time /
# the card's dense bf16 peak (989 TFLOP/s for H100 SXM and H200, 756 for H100 PCIe; --peak-tflops overrides).
# 4-bit runs are counted with the same FLOPs, so the cost of dequantising shows as a lower MFU.
# The LM head (151,936 x 2,048) is counted on the positions it really runs on: every position for the stock
# full-logits loss, the labelled (caption) positions only for `caption_ce`. CLIP is counted up to the layer it runs:
# all 24 layers for the stock call (it returns every hidden state), 23 for `clip_tokens` at --clip-layer -2.

PEAK_TFLOPS = (('H100 PCIe', 756), ('H100 NVL', 835), ('H100', 989), ('H200', 989), ('GH200', 989), ('A100', 312),
               ('L40S', 362), ('A10G', 70), ('L4', 121))
CAPTION = ('A white car is parked on the right next to the sidewalk, a pedestrian is crossing at the intersection ahead, '
           'and a bus is approaching in the next lane while the ego vehicle slows down behind a truck.')

def _meta_copies(vlm):
    "CLIP and Qwen-VL built on the meta device from `vlm`'s own configs (shapes only, no memory; 4-bit weights unpacked)."
    import torch
    qwen = vlm.qwen.get_base_model() if hasattr(vlm.qwen, 'get_base_model') else vlm.qwen
    with torch.device('meta'):
        return type(vlm.clip)(vlm.clip.config), type(qwen)(qwen.config)

def matmul_params(module) -> int:
    "Weights of the matmuls (Linear, Conv) in `module`."
    import torch.nn as nn
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.Conv3d)))

def flop_model(vlm) -> dict:
    "Per-view / per-token FLOP counts of `vlm`'s frozen towers, connector and LLM (see the comment above)."
    geometry, connector = vlm.geometry, vlm.connector
    clip, qwen = _meta_copies(vlm)
    cc, vc, tc = clip.config, qwen.config.vision_config, qwen.config.text_config
    gh, gw = geometry.clip_grid  # patches per view
    n = gh*gw
    T = geometry.tokens_per_view
    vis = qwen.model.visual
    p_merger = matmul_params(vis.merger)
    p_vis = matmul_params(vis) - p_merger
    # windowed attention of the Qwen2.5-VL vision tower: windows of (window_size / patch) patches a side
    full_idx = set(getattr(vc, 'fullatt_block_indexes', None) or range(vc.depth))
    ws = (getattr(vc, 'window_size', 0) or 0)//vc.patch_size
    if ws:
        rows = [min(ws, gh - i) for i in range(0, gh, ws)]; cols = [min(ws, gw - j) for j in range(0, gw, ws)]
        win_sq = sum((r*c)**2 for r in rows for c in cols)
    else: win_sq = n*n
    hv = vc.hidden_size if qwen.config.model_type == 'qwen2_5_vl' else vc.embed_dim
    attn_vis = sum(4*(n*n if i in full_idx else win_sq)*hv for i in range(vc.depth))
    p_clip = matmul_params(clip)
    L = cc.num_hidden_layers
    runs = vlm.clip_layer % (L + 1)  # layers clip_tokens runs
    clip_layer = 2*(p_clip - matmul_params(clip.embeddings))*(n + 1)/L + 4*(n + 1)**2*cc.hidden_size
    clip_emb = 2*matmul_params(clip.embeddings)*n
    teacher_view = 2*p_vis*n + 2*p_merger*T + attn_vis
    p_head = qwen.lm_head.weight.numel()
    p_llm = matmul_params(qwen.model.language_model) + p_head
    p_con = matmul_params(connector)
    del clip, qwen
    return dict(p_clip=p_clip, p_vision=p_vis + p_merger, p_llm=p_llm, p_head=p_head, p_connector=p_con,
                clip_view=clip_emb + runs*clip_layer, clip_view_stock=clip_emb + L*clip_layer,
                teacher_view=teacher_view, llm_layers=tc.num_hidden_layers, d_llm=tc.hidden_size, tokens_per_view=T)

def step_flops(fm, mode, B, V, L=None, head_rows=None) -> float:
    "Counted FLOPs of one training step on B samples of V views (L: padded LM length; head_rows: positions the LM head runs on, default all B*L)."
    f = 6*fm['p_connector']*B*V*fm['tokens_per_view']
    if mode == 'lm':
        head_rows = B*L if head_rows is None else head_rows
        f += 4*(fm['p_llm'] - fm['p_head'])*B*L + 4*fm['p_head']*head_rows + 3*fm['llm_layers']*4*B*L*L*fm['d_llm']
    return f

def full_logits_ce(model, feats, cameras, batch):
    "The stock lm loss (clip_vlm before the supervised-position logits): logits at every position, upcast, then the per-sample CE."
    import torch.nn.functional as F
    logits = model(feats, cameras, lm_batch={k: v for k, v in batch.items() if k != 'labels'}).logits[:, :-1].float()
    labels = batch['labels'][:, 1:].to(logits.device)
    ce = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction='none')
    n = (labels != -100).sum(1)
    return ce.sum(1)/n.clamp_min(1), n

def stock_towers(vlm, views):
    "The stock frozen towers: CLIP with every hidden state, the vision tower with one attention call per window, normalised on the CPU."
    import torch
    from clip_vlm.image import clip_pixels, qwen_pixels
    from clip_vlm.image_tower import teacher_tokens
    with torch.no_grad():
        px = clip_pixels(views, vlm.clip_processor).to(vlm.clip.device, vlm.clip.dtype)
        c = vlm.clip(pixel_values=px, output_hidden_states=True, interpolate_pos_encoding=True).hidden_states[vlm.clip_layer][:, 1:]
        return c, teacher_tokens(vlm.qwen, *qwen_pixels(views, vlm.qwen_processor), batched=False)

def _jpegs(folder, n):
    "`n` generated 1600x900 camera JPEGs (clip_vlm.synthetic's camera images), for the data-loader row."
    from clip_vlm.synthetic import camera_image
    from clip_vlm.data import CAMERAS
    out = []
    for i in range(n):
        p = Path(folder)/f'{i}.jpg'; camera_image(seed=i, camera=CAMERAS[i % len(CAMERAS)]).save(p, quality=90); out.append(p)
    return out

class _Views:
    "Map-style dataset: sample i -> its 6 views, uint8 `(6, H, W, 3)` (decoded in the workers, as fit's loader does)."
    def __init__(self, paths, size, n): self.paths, self.size, self.n = paths, size, n
    def __len__(self): return self.n
    def __getitem__(self, i):
        import torch
        from clip_vlm.image import load_views
        k = len(self.paths)
        return torch.from_numpy(load_views([self.paths[(6*i + j) % k] for j in range(6)], self.size))

def bench(a) -> list:
    "The gpu section's rows (`a`: the parsed command line of bench/run.py)."
    import gc, os, torch, numpy as np
    from clip_vlm.model import CLIPQwenVLM, caption_ce, compile_model
    from clip_vlm.data import CAMERAS
    from clip_vlm.distill import distill_batch_loss
    dev = torch.device(a.gpu_device)
    cuda = dev.type == 'cuda'
    if cuda and not torch.cuda.is_available(): raise SystemExit('gpu: CUDA is not available (use --gpu-device cpu --gpu-size small for a dry run)')
    dtype = torch.bfloat16 if cuda else torch.float32
    name = torch.cuda.get_device_name(dev) if cuda else 'cpu'
    peak = a.peak_tflops or next((v for k, v in PEAK_TFLOPS if k in name), None) if cuda else None
    sync = (lambda: torch.cuda.synchronize(dev)) if cuda else (lambda: None)
    OOM = torch.cuda.OutOfMemoryError if cuda else MemoryError
    t_start = time.perf_counter()
    budget = a.gpu_budget
    over = lambda: time.perf_counter() - t_start > budget
    cap_gb = getattr(a, 'gpu_mem_gb', 80)
    if cuda and cap_gb:  # emulate an 80 GB card on a bigger one: the allocator refuses beyond the cap
        total = torch.cuda.get_device_properties(dev).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap_gb*1e9/total), torch.device(dev).index or 0)
    small = a.quick or not cuda
    tower_batches = [1, 2] if small else [1, 8, 16]
    lm_batches = [1, 2] if small else [1, 8, 16, 32, 48, 64]
    quants = ['none', 'bnb-4bit']
    steps, warm = (2, 1) if small else (5, 2)
    V = len(CAMERAS)
    mem = (lambda: torch.cuda.max_memory_allocated(dev)/2**30) if cuda else (lambda: None)
    reset = (lambda: (torch.cuda.empty_cache(), torch.cuda.reset_peak_memory_stats(dev))) if cuda else (lambda: None)
    log(f"gpu: {name}, peak {peak} TFLOP/s, models {a.gpu_size}, dtype {dtype}, cap {cap_gb} GB, towers {tower_batches}, "
        f"lm {lm_batches}, quant {quants}, compile {a.gpu_compile}")
    def timed(fn):
        ts = []
        for i in range(warm + steps):
            sync(); t = time.perf_counter(); r = fn(); sync()
            if i >= warm: ts.append(time.perf_counter() - t)
        return ts, r
    out = []
    folder = Path(tempfile.mkdtemp(prefix='clip_vlm_bench_models_', dir=a.gpu_tmp))
    try:
        t = time.perf_counter()
        models = real_models(folder, device=dev, dtype=dtype) if a.gpu_size == 'real' else small_models(folder)
        if cuda: torch.cuda.empty_cache()
        out.append(row('gpu', f'build random {a.gpu_size}-size models from configs on {dev.type} and save', time.perf_counter() - t, 's',
                       note=f"{sum(f.stat().st_size for f in folder.rglob('*.safetensors'))/2**30:.1f} GiB of safetensors"))
        jpgs = _jpegs(folder, 48)
        rng = np.random.default_rng(0)
        for quant in quants:
            if over(): log(f"gpu: over the {budget} s budget, skipping {quant}"); break
            gc.collect(); reset()
            t = time.perf_counter()
            vlm = CLIPQwenVLM.build(models['clip'], models['qwen'], quant=quant, dtype=dtype, device=dev, seed=0)
            load_s = time.perf_counter() - t
            base_mem = torch.cuda.memory_allocated(dev)/2**30 if cuda else None
            fm = flop_model(vlm)
            out.append(row('gpu', f'load CLIP + Qwen (quant {quant}) through CLIPQwenVLM.build', load_s, 's',
                           note=None if base_mem is None else f'{base_mem:.1f} GiB on the GPU after loading',
                           params_m={k: round(v/1e6, 1) for k, v in fm.items() if k.startswith('p_')}))
            Bmax = max(tower_batches + lm_batches)
            views = rng.integers(0, 256, (Bmax*V, *vlm.image_size, 3), dtype=np.uint8)
            items = [vlm.lm_inputs(CAMERAS, CAPTION) for _ in range(Bmax)]
            # ---- frozen towers: ours at each batch, stock at batch 8 (side by side), then fed by a DataLoader
            feats = {}
            for B in tower_batches if quant == 'none' else [tower_batches[-2 if len(tower_batches) > 2 else -1]]:
                if over(): break
                v = views[:B*V]
                cases = [('ours', lambda: (vlm.clip_features(v), vlm.teacher(v)))]
                if B == (tower_batches[1] if len(tower_batches) > 2 else tower_batches[-1]) and quant == 'none':
                    cases.append(('stock', lambda: stock_towers(vlm, v)))
                for case, fn in cases:
                    try:
                        reset(); ts, r = timed(fn)
                        fl = B*V*((fm['clip_view'] if case == 'ours' else fm['clip_view_stock']) + fm['teacher_view'])
                        out.append(_gpu_row(f"frozen towers ({'clip_features + teacher' if case == 'ours' else 'stock: CLIP all hidden states + per-window attention'}), "
                                            f'quant {quant}, batch {B}', B, ts, fl, peak, mem(), case=case, batch=B, quant=quant))
                        log(f"gpu: towers {case} {quant} b{B}: {B/median(ts):.2f} samples/s")
                        if case == 'ours': feats[B] = r
                        if case == 'ours' and B == 8 and quant == 'none': _target(out[-1], 60)
                    except OOM as e:
                        out.append(row('gpu', f'frozen towers {case}, quant {quant}, batch {B}', None, 'OOM', note=str(e)[:120]))
            _ratio(out, 'frozen towers', 5)
            if quant == 'none' and not over():
                B = tower_batches[1] if len(tower_batches) > 2 else tower_batches[-1]
                workers = min(8, max(1, (os.cpu_count() or 2) - 2))
                try:
                    dl = torch.utils.data.DataLoader(_Views(jpgs, vlm.image_size, B*(warm + steps + 3)), batch_size=B,
                                                     num_workers=workers, pin_memory=cuda, persistent_workers=False)
                    waits, ts = [], []
                    it = iter(dl)
                    for i in range(warm + steps + 3):
                        t0 = time.perf_counter(); x = next(it); t1 = time.perf_counter()
                        x = x.reshape(-1, *x.shape[2:])
                        vlm.clip_features(x); vlm.teacher(x); sync()
                        if i >= warm: waits.append(t1 - t0); ts.append(time.perf_counter() - t0)
                    del dl, it
                    out.append(row('gpu', f'frozen towers fed by a DataLoader ({workers} workers decoding JPEGs, pin_memory), batch {B}',
                                   B/median(ts), 'samples/s', values=[B/t for t in ts], wait_ms=1e3*median(waits),
                                   note=f'waits {1e3*median(waits):.0f} ms per step for data (median; max {1e3*max(waits):.0f} ms), '
                                        f'step {1e3*median(ts):.0f} ms including the wait'))
                    log(f"gpu: towers from JPEGs b{B}: {B/median(ts):.2f} samples/s, wait {1e3*median(waits):.0f} ms")
                except Exception as e:
                    out.append(row('gpu', f'frozen towers fed by a DataLoader, batch {B}', None, 'FAILED', note=f'{type(e).__name__}: {e}'[:200]))
            # ---- training steps with the features already computed (a warm cache), and distill without a cache
            fB = max(feats) if feats else None
            def step_fn(mode, B, loss_fn=caption_ce, towers=False):
                if towers: v = views[:B*V]
                c, te = feats[fB]
                c, te = c.repeat(-(-B//fB), 1, 1)[:B*V], te.repeat(-(-B//fB), 1, 1)[:B*V]
                fl_list, tl_list = list(c.split(V)), list(te.split(V))
                cams = [list(CAMERAS)]*B
                lmb = vlm.collate(items[:B])
                opt = torch.optim.AdamW([p for p in vlm.parameters() if p.requires_grad], lr=1e-5)
                def step():
                    fl_, tl_ = fl_list, tl_list
                    if towers:
                        fl_, tl_ = list(vlm.clip_features(v).split(V)), list(vlm.teacher(v).split(V))
                    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
                        if mode == 'distill': loss, _ = distill_batch_loss(vlm, fl_, tl_, cams)
                        else: loss = loss_fn(vlm, fl_, cams, lmb)[0].mean()
                    loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
                    return loss
                return step, lmb
            plan = []
            if fB:
                for B in (lm_batches if quant == 'none' else [1, 8, 16] if not small else lm_batches):
                    plan.append(('lm', B, 'ours'))
                    if B == (8 if not small else 2) and quant == 'none': plan.append(('lm', B, 'stock'))
                    if B == (8 if not small else 2): plan += [('distill', B, 'cached'), ('distill', B, 'no cache')]
            oom_at = None
            for mode, B, case in plan:
                if over(): log("gpu: over the budget, skipping the rest"); break
                if mode == 'lm' and case == 'ours' and oom_at and B > oom_at: continue
                vlm.train()
                step, lmb = step_fn(mode, B, full_logits_ce if case == 'stock' else caption_ce, towers=case == 'no cache')
                L = lmb['input_ids'].shape[1]
                n_lab = int((lmb['labels'][:, 1:] != -100).sum())
                try:
                    reset(); ts, loss = timed(step)
                    assert torch.isfinite(loss).item(), f'{mode} loss {loss.item()}'
                    if mode == 'lm':
                        fl = step_flops(fm, 'lm', B, V, L, None if case == 'stock' else n_lab)
                        what = 'logits at every position (stock)' if case == 'stock' else f'logits at the {n_lab} caption positions'
                        label = f'train lm, {what}, quant {quant}, batch {B}, LM length {L}'
                    else:
                        fl = step_flops(fm, 'distill', B, V) + (B*V*(fm['clip_view'] + fm['teacher_view']) if case == 'no cache' else 0)
                        label = f"train distill, {'features cached (warm --cache-dir)' if case == 'cached' else 'no cache: towers every step'}, quant {quant}, batch {B}"
                    out.append(_gpu_row(label, B, ts, fl, peak, mem(), mode=mode, case=case, batch=B, quant=quant))
                    if mode == 'lm' and case == 'ours' and B == 1 and quant == 'none' and not small: _target(out[-1], 8)
                    log(f"gpu: {mode} {case} {quant} b{B}: {B/median(ts):.2f} samples/s, peak {mem()} GiB, loss {loss.item():.3f}")
                except OOM as e:
                    out.append(row('gpu', f'train {mode} {case}, quant {quant}, batch {B}', None, 'OOM',
                                   note=f'over the {cap_gb} GB cap' if cap_gb else str(e)[:120], mode=mode, kind=case, batch=B, quant=quant))
                    if mode == 'lm' and case == 'ours': oom_at = B
                vlm.zero_grad(set_to_none=True); del step; reset()
            _ratio(out, 'train lm', 2, quant=quant)
            lm_rows = [r for r in out if r.get('mode') == 'lm' and r.get('kind') == 'ours' and r.get('quant') == quant and r['unit'] == 'samples/s']
            if lm_rows:
                best = max(lm_rows, key=lambda r: r['median'])
                fits = max(r['batch'] for r in lm_rows)
                out.append(row('gpu', f'train lm, quant {quant}: best batch and the largest batch that fits {cap_gb} GB (of those tried)',
                               best['median'], 'samples/s', best_batch=best['batch'], largest_fit=fits,
                               note=f"best at batch {best['batch']}; largest batch run within {cap_gb} GB: {fits}"
                                    + (f' (batch {oom_at} did not fit)' if oom_at else ' (no larger batch tried)')))
                if quant == 'none' and not small: _target(out[-1], 33)
            # ---- torch.compile (optional): towers and an lm step at batch 8, after the eager rows
            if a.gpu_compile and quant == 'none' and not over():
                try:
                    t = time.perf_counter()
                    compile_model(vlm)
                    B = tower_batches[1] if len(tower_batches) > 2 else tower_batches[-1]
                    v = views[:B*V]
                    sync(); t1 = time.perf_counter(); vlm.clip_features(v); vlm.teacher(v); sync()
                    first = time.perf_counter() - t1
                    reset(); ts, _ = timed(lambda: (vlm.clip_features(v), vlm.teacher(v)))
                    out.append(_gpu_row(f'frozen towers, torch.compile (regional), quant {quant}, batch {B}', B, ts,
                                        B*V*(fm['clip_view'] + fm['teacher_view']), peak, mem(), case='compiled', batch=B, quant=quant,
                                        compile_first_call_s=first))
                    out[-1]['note'] += f'; first call (compiling) {first:.0f} s'
                    vlm.train()
                    step, lmb = step_fn('lm', B)
                    sync(); t1 = time.perf_counter(); step(); sync(); first = time.perf_counter() - t1
                    reset(); ts, _ = timed(step)
                    n_lab = int((lmb['labels'][:, 1:] != -100).sum())
                    out.append(_gpu_row(f'train lm, torch.compile (regional), quant {quant}, batch {B}', B, ts,
                                        step_flops(fm, 'lm', B, V, lmb['input_ids'].shape[1], n_lab), peak, mem(),
                                        mode='lm', case='compiled', batch=B, quant=quant, compile_first_call_s=first))
                    out[-1]['note'] += f'; first step (compiling) {first:.0f} s; whole compile {time.perf_counter() - t:.0f} s'
                    log(f"gpu: compiled rows done in {time.perf_counter() - t:.0f} s")
                    del step
                except Exception as e:
                    import traceback; traceback.print_exc()
                    out.append(row('gpu', 'torch.compile rows', None, 'FAILED', note=f'{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}'[:200]))
            del vlm, feats; gc.collect(); reset()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    out.append(row('gpu', 'whole GPU section (wall)', time.perf_counter() - t_start, 's', note=f'{name}; budget {budget} s'))
    return out

def _ratio(out, prefix, target=None, **match):
    "Put 'faster than stock by' (and `target`, a minimum ratio) on the 'ours' row whose stock row (same prefix, batch, quant) ran."
    rows = [r for r in out if r['case'].startswith(prefix) and r['unit'] == 'samples/s'
            and all(r.get(k) == v for k, v in match.items())]
    for st in [r for r in rows if r.get('kind') == 'stock']:
        for r in rows:
            if r.get('kind') == 'ours' and r.get('batch') == st.get('batch') and r.get('quant') == st.get('quant'):
                r.update(ratio=r['median']/st['median'], ratio_to='faster than stock by')
                if target: r.update(target=f'>= {target}x stock', ok=r['ratio'] >= target)

def _target(r, minimum):
    "Mark a samples/s row against an absolute target."
    r.update(target=f'>= {minimum} samples/s', ok=r['median'] >= minimum)
    return r

def _gpu_row(label, B, ts, flops, peak, mem, **extra):
    m = median(ts)
    tf = flops/m/1e12
    kind = extra.pop('case', None)
    return row('gpu', label, B/m, 'samples/s', values=[B/t for t in ts], step_ms=1e3*m, tflops=tf,
               mfu=None if not peak else tf/peak, peak_mem_gib=mem, gflop_per_step=flops/1e9, kind=kind, **extra,
               note=f"{1e3*m:.0f} ms/step, {tf:.1f} TFLOP/s" + (f", MFU {100*tf/peak:.1f}%" if peak else '')
                    + (f", peak {mem:.1f} GiB" if mem is not None else ''))
