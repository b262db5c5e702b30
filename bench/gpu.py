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
    gh, gw = geometry['clip_grid']  # patches per view
    n = gh*gw
    T = geometry['tokens_per_view']
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
    clip_view = 2*p_clip*(n + 1) + cc.num_hidden_layers*4*(n + 1)**2*cc.hidden_size
    teacher_view = 2*p_vis*n + 2*p_merger*T + attn_vis
    p_llm = matmul_params(qwen.model.language_model) + qwen.lm_head.weight.numel()
    p_con = matmul_params(connector)
    del clip, qwen
    return dict(p_clip=p_clip, p_vision=p_vis + p_merger, p_llm=p_llm, p_connector=p_con, clip_view=clip_view,
                teacher_view=teacher_view, llm_layers=tc.num_hidden_layers, d_llm=tc.hidden_size, tokens_per_view=T)

def step_flops(fm, mode, B, V, L=None) -> float:
    "Counted FLOPs of one training step on B samples of V views (L: padded LM length)."
    f = 6*fm['p_connector']*B*V*fm['tokens_per_view']
    if mode == 'lm':
        f += 4*fm['p_llm']*B*L + 3*fm['llm_layers']*4*B*L*L*fm['d_llm']
    return f

def bench(a) -> list:
    "The gpu section's rows (`a`: the parsed command line of bench/run.py)."
    import gc, torch, numpy as np
    from clip_vlm.model import CLIPQwenVLM
    from clip_vlm.data import CAMERAS
    from clip_vlm.distill import distill_batch_loss
    from clip_vlm.train import lm_batch_loss
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
    batches = [1, 2] if a.quick or not cuda else [1, 4, 8]
    quants = ['none', 'bnb-4bit']
    steps, warm = (2, 1) if a.quick or not cuda else (5, 2)
    V = len(CAMERAS)
    log(f"gpu: {name}, peak {peak} TFLOP/s, models {a.gpu_size}, dtype {dtype}, batches {batches}, quant {quants}")
    out = []
    folder = Path(tempfile.mkdtemp(prefix='clip_vlm_bench_models_', dir=a.gpu_tmp))
    try:
        t = time.perf_counter()
        models = real_models(folder, device=dev, dtype=dtype) if a.gpu_size == 'real' else small_models(folder)
        if cuda: torch.cuda.empty_cache()
        out.append(row('gpu', f'build random {a.gpu_size}-size models from configs on {dev.type} and save', time.perf_counter() - t, 's',
                       note=f"{sum(f.stat().st_size for f in folder.rglob('*.safetensors'))/2**30:.1f} GiB of safetensors"))
        rng = np.random.default_rng(0)
        for quant in quants:
            if time.perf_counter() - t_start > budget: log(f"gpu: over the {budget} s budget, skipping {quant}"); break
            gc.collect()
            if cuda: torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats(dev)
            t = time.perf_counter()
            vlm = CLIPQwenVLM.build(models['clip'], models['qwen'], quant=quant, dtype=dtype, device=dev, seed=0)
            load_s = time.perf_counter() - t
            base_mem = torch.cuda.memory_allocated(dev)/2**30 if cuda else None
            fm = flop_model(vlm)
            out.append(row('gpu', f'load CLIP + Qwen (quant {quant}) through CLIPQwenVLM.build', load_s, 's',
                           note=None if base_mem is None else f'{base_mem:.1f} GiB on the GPU after loading',
                           params_m={k: round(v/1e6, 1) for k, v in fm.items() if k.startswith('p_')}))
            views = rng.integers(0, 256, (max(batches)*V, *vlm.image_size, 3), dtype=np.uint8)
            items = [vlm.lm_inputs(CAMERAS, CAPTION) for _ in range(max(batches))]
            for B in batches:
                if time.perf_counter() - t_start > budget: log(f"gpu: over the {budget} s budget, skipping"); break
                v = views[:B*V]
                def towers():
                    return vlm.clip_features(v), vlm.teacher(v)
                try:
                    if cuda: torch.cuda.reset_peak_memory_stats(dev)
                    ts = []
                    for i in range(warm + steps):
                        sync(); t = time.perf_counter(); c, te = towers(); sync()
                        if i >= warm: ts.append(time.perf_counter() - t)
                    m = median(ts); fl = B*V*(fm['clip_view'] + fm['teacher_view'])
                    mem = torch.cuda.max_memory_allocated(dev)/2**30 if cuda else None
                    out.append(_gpu_row(f'frozen towers (CLIP + teacher forward; epoch-1 work), quant {quant}, batch {B}',
                                        B, ts, fl, peak, mem))
                    log(f"gpu: towers {quant} b{B}: {B/m:.2f} samples/s")
                except OOM as e:
                    out.append(row('gpu', f'frozen towers, quant {quant}, batch {B}', None, 'OOM', note=str(e)[:120])); continue
                fl_list = [c[i*V:(i+1)*V] for i in range(B)]
                tl_list = [te[i*V:(i+1)*V] for i in range(B)]
                cams = [list(CAMERAS)]*B
                lmb = {k: x.to(dev) for k, x in vlm.collate(items[:B]).items()}
                L = lmb['input_ids'].shape[1]
                for mode in ('distill', 'lm'):
                    vlm.train()
                    opt = torch.optim.AdamW([p for p in vlm.parameters() if p.requires_grad], lr=1e-5)
                    def step():
                        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
                            if mode == 'distill': loss, _ = distill_batch_loss(vlm, fl_list, tl_list, cams)
                            else: loss, _ = lm_batch_loss(vlm, fl_list, lmb, cams)
                        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
                        return loss
                    try:
                        if cuda: torch.cuda.reset_peak_memory_stats(dev)
                        ts = []
                        for i in range(warm + steps):
                            sync(); t = time.perf_counter(); loss = step(); sync()
                            if i >= warm: ts.append(time.perf_counter() - t)
                        assert torch.isfinite(loss).item(), f'{mode} loss {loss.item()}'
                        mem = torch.cuda.max_memory_allocated(dev)/2**30 if cuda else None
                        out.append(_gpu_row(f'train {mode} (cached features), quant {quant}, batch {B}'
                                            + (f', LM length {L}' if mode == 'lm' else ''), B, ts, step_flops(fm, mode, B, V, L),
                                            peak, mem))
                        log(f"gpu: {mode} {quant} b{B}: {B/median(ts):.2f} samples/s, loss {loss.item():.3f}")
                    except OOM as e:
                        out.append(row('gpu', f'train {mode}, quant {quant}, batch {B}', None, 'OOM', note=str(e)[:120]))
                    del opt; vlm.zero_grad(set_to_none=True)
                    if cuda: torch.cuda.empty_cache()
                del c, te, fl_list, tl_list, lmb
            del vlm
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    out.append(row('gpu', 'whole GPU section (wall)', time.perf_counter() - t_start, 's', note=f'{name}; budget {budget} s'))
    return out

def _gpu_row(case, B, ts, flops, peak, mem):
    m = median(ts)
    tf = flops/m/1e12
    return row('gpu', case, B/m, 'samples/s', values=[B/t for t in ts], step_ms=1e3*m, tflops=tf,
               mfu=None if not peak else tf/peak, peak_mem_gib=mem, gflop_per_step=flops/1e9,
               note=f"{1e3*m:.0f} ms/step, {tf:.1f} TFLOP/s" + (f", MFU {100*tf/peak:.1f}%" if peak else '')
                    + (f", peak {mem:.1f} GiB" if mem is not None else ''))

