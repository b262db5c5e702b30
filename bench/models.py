"""Random-weight models for the benchmark (nothing is downloaded), saved as folders that load like hub ids.

- `small_models`: bigger than clip_vlm.tiny's, far smaller than the real ones (CLIP vision 256 wide x 6 layers; Qwen2.5-VL
  with a 128 x 4-layer vision tower and a 256 x 4-layer LLM), for the CPU sections. Built by clip_vlm.tiny's own
  `build_clip` / `build_qwen` with their size tables set to these sizes.
- `real_models`: CLIP ViT-L/14 and Qwen2.5-VL-3B from `clip_vlm.model.real_config`, built directly on the GPU in bf16,
  with the real vocabulary (151,936) and tied embeddings, for the gpu section."""
from __future__ import annotations
import hashlib, json, shutil, tempfile, time
from pathlib import Path
from .common import log

SMALL_CLIP = dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=4, image_size=224,
                  patch_size=14, num_channels=3, hidden_act='quick_gelu', projection_dim=256)
SMALL_TEXT = dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                  hidden_act='silu', max_position_embeddings=4096, rms_norm_eps=1e-6,
                  rope_parameters=dict(rope_type='default', rope_theta=1e6, mrope_section=[8, 12, 12]))
SMALL_VISION = dict(depth=4, hidden_size=128, intermediate_size=384, num_heads=4, out_hidden_size=256, hidden_act='silu',
                    in_channels=3, patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                    fullatt_block_indexes=[3], tokens_per_second=2)

def _finished(folder:Path, build) -> dict:
    "`{'clip': folder/'clip', 'qwen': folder/'qwen'}`, built by `build(tmp)` into a temporary folder once, then reused."
    paths = {'clip': folder/'clip', 'qwen': folder/'qwen'}
    if (folder/'done.json').exists(): return paths
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{folder.name}-', dir=folder.parent))
    try:
        t = time.perf_counter()
        build(tmp)
        (tmp/'done.json').write_text(json.dumps(dict(seconds=time.perf_counter() - t)))
        if folder.exists(): shutil.rmtree(folder)  # an unfinished earlier build
        tmp.rename(folder)
    finally: shutil.rmtree(tmp, ignore_errors=True)
    return paths

def _key(**spec) -> str: return hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:10]

def small_models(folder, seed:int=0) -> dict:
    "The small CLIP vision + Qwen2.5-VL folders under `folder` (built once on the CPU in fp32 by clip_vlm.tiny's builders)."
    from unittest import mock
    import transformers, clip_vlm.tiny as tiny
    def build(tmp):
        log(f"models: building the small random models (once) in {folder}")
        # the tiny builders read their sizes from these tables when called: give them the small sizes
        with mock.patch.dict(tiny.CLIP_VISION, SMALL_CLIP, clear=True), \
             mock.patch.dict(tiny.QWEN_TEXT, SMALL_TEXT, clear=True), \
             mock.patch.dict(tiny.QWEN2_5_VL_VISION, SMALL_VISION, clear=True):
            tiny.build_clip(tmp/'clip', seed)
            tiny.build_qwen(tmp/'qwen', 'qwen2_5_vl', seed=seed)
    key = _key(clip=SMALL_CLIP, text=SMALL_TEXT, vision=SMALL_VISION, seed=seed, tf=transformers.__version__.split('.')[0])
    return _finished(Path(folder)/f'small-{key}', build)

def real_models(folder, device='cuda', dtype=None, seed:int=0) -> dict:
    """CLIP ViT-L/14 + Qwen2.5-VL-3B with random weights under `folder`, built on `device` in `dtype` (~8 GB in bf16).

    `tiny.build_qwen` makes a tokenizer-sized vocabulary, untied embeddings and builds on the CPU in fp32; the real
    sizes need the real 151,936-token vocabulary and tied embeddings (the LM head is a tenth of the LLM's FLOPs and its
    logits dominate memory), and 3B parameters are built far faster directly on the GPU."""
    import torch
    from transformers import CLIPVisionModel, Qwen2_5_VLForConditionalGeneration, GenerationConfig
    from clip_vlm.image import real_config
    from clip_vlm.tiny import make_tokenizer, clip_image_processor, qwen_image_processor, _qwen_ids
    dtype = dtype or torch.float32
    def build(tmp):
        tok = make_tokenizer()
        eot, eos = tok.convert_tokens_to_ids('<|endoftext|>'), tok.convert_tokens_to_ids('<|im_end|>')
        ccfg, qcfg = real_config('clip_vit_l14'), real_config('qwen2_5_vl_3b')
        qcfg.update(_qwen_ids(tok))  # the tokenizer's ids all fit in the real vocabulary
        qcfg.text_config.update(dict(bos_token_id=eot, eos_token_id=eos, pad_token_id=eot))
        t = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            with torch.device(device):
                clip = CLIPVisionModel._from_config(ccfg, dtype=dtype)
                qwen = Qwen2_5_VLForConditionalGeneration._from_config(qcfg, dtype=dtype)
        qwen.generation_config = GenerationConfig(bos_token_id=eot, eos_token_id=[eos, eot], pad_token_id=eot, do_sample=False)
        log(f"models: built {sum(p.numel() for p in clip.parameters())/1e6:.0f}M + {sum(p.numel() for p in qwen.parameters())/1e6:.0f}M "
            f"parameters on {device} in {time.perf_counter() - t:.0f} s; saving to {folder}")
        clip.save_pretrained(tmp/'clip'); clip_image_processor().save_pretrained(tmp/'clip')
        qwen.save_pretrained(tmp/'qwen'); tok.save_pretrained(tmp/'qwen'); qwen_image_processor().save_pretrained(tmp/'qwen')
    return _finished(Path(folder)/f'real-{_key(seed=seed, dtype=dtype)}', build)
