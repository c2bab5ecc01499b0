"""The tiny offline model: the real `ZImagePipeline` class with tiny random weights.

No download, runs on a CPU in about a second at 256x256. Its images are noise
from an untrained test model; it exists so tests, CI and demos exercise the
real pipeline code on machines with no weights. Building it is deterministic:
the same process-independent seeds give the same weights, so the same
parameters give the same pixels in any process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from diffusers import ZImagePipeline

# Same shape of chat template as Qwen3's (the pipeline calls apply_chat_template).
_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
_WEIGHT_SEED = 0


def _byte_level_alphabet() -> list[str]:
    """The 256 printable stand-ins GPT-2 style byte-level BPE uses for raw bytes."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            codes.append(256 + extra)
            extra += 1
    return [chr(code) for code in codes]


def build_tokenizer():  # -> transformers.Qwen2Tokenizer
    from transformers import Qwen2Tokenizer

    vocab = {token: index for index, token in enumerate(_SPECIAL_TOKENS)}
    for symbol in _byte_level_alphabet():
        vocab.setdefault(symbol, len(vocab))
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], additional_special_tokens=list(_SPECIAL_TOKENS[1:]))
    tokenizer.chat_template = _CHAT_TEMPLATE
    return tokenizer


def build_tiny_pipeline() -> ZImagePipeline:
    """Build the tiny pipeline on the CPU in float32 (deterministic weights)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        ZImagePipeline,
        ZImageTransformer2DModel,
    )
    from transformers import Qwen3Config, Qwen3Model

    tokenizer = build_tokenizer()
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(_WEIGHT_SEED)
        transformer = ZImageTransformer2DModel(
            all_patch_size=(2,),
            all_f_patch_size=(1,),
            in_channels=16,
            dim=32,
            n_layers=2,
            n_refiner_layers=1,
            n_heads=2,
            n_kv_heads=2,
            norm_eps=1e-5,
            qk_norm=True,
            cap_feat_dim=16,
            rope_theta=256.0,
            t_scale=1000.0,
            axes_dims=[8, 4, 4],
            # Must cover the largest size allowed (2048 px -> 128 patches a side).
            axes_lens=[1024, 512, 512],
        )
        with torch.no_grad():  # created with torch.empty: fix them so no NaN slips in
            for name in ("x_pad_token", "cap_pad_token"):
                token = getattr(transformer, name)
                token.copy_(torch.ones_like(token))
        torch.manual_seed(_WEIGHT_SEED)
        # Four blocks: downsamples by 8 like the real VAE, so token counts match real sizes.
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=["DownEncoderBlock2D"] * 4,
            up_block_types=["UpDecoderBlock2D"] * 4,
            block_out_channels=[8, 16, 16, 16],
            layers_per_block=1,
            latent_channels=16,
            norm_num_groups=8,
            sample_size=32,
            scaling_factor=0.3611,
            shift_factor=0.1159,
        )
        torch.manual_seed(_WEIGHT_SEED)
        text_encoder = Qwen3Model(
            Qwen3Config(
                hidden_size=16,
                intermediate_size=16,
                num_hidden_layers=2,
                num_attention_heads=2,
                num_key_value_heads=2,
                vocab_size=len(tokenizer),
                max_position_embeddings=2048,  # the enhancer's system prompt is ~1000 byte tokens here
                # As Z-Image's Qwen3-4B: its output head is its input embeddings (`prompt_writer`).
                tie_word_embeddings=True,
            )
        )
    finally:
        torch.random.set_rng_state(generator_state)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=False)
    pipeline = ZImagePipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
    )
    pipeline.set_progress_bar_config(disable=True)  # type: ignore[attr-defined]  # a DiffusionPipeline method
    return pipeline


def build_tiny_controlnet(transformer: Any) -> Any:  # -> diffusers.ZImageControlNetModel
    """A tiny `ZImageControlNetModel` for the tiny transformer (its dims, a control layer beside
    each of its 2 layers), built deterministically. diffusers zero-initialises the control blocks'
    `before_proj`/`after_proj` (a fresh ControlNet changes nothing): they are filled from a fixed
    seed instead, so a control image really changes the image. `transformer`: the pipeline's, whose
    embedders the ControlNet shares (`from_transformer`, done by the pipeline)."""
    import torch
    from diffusers import ZImageControlNetModel

    config = transformer.config
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(_WEIGHT_SEED)
        controlnet: Any = ZImageControlNetModel(
            control_layers_places=list(range(config.n_layers)),
            control_in_dim=config.in_channels,
            all_patch_size=tuple(config.all_patch_size),
            all_f_patch_size=tuple(config.all_f_patch_size),
            dim=config.dim,
            n_refiner_layers=config.n_refiner_layers,
            n_heads=config.n_heads,
            n_kv_heads=config.n_kv_heads,
            norm_eps=config.norm_eps,
            qk_norm=config.qk_norm,
        )
    finally:
        torch.random.set_rng_state(generator_state)
    generator = torch.Generator().manual_seed(_WEIGHT_SEED + 1)
    with torch.no_grad():
        for name, weight in controlnet.named_parameters():
            if "before_proj" in name or "after_proj" in name:
                weight.copy_(torch.randn(weight.shape, generator=generator) * 0.3)
    return controlnet.eval()  # float32, as the tiny transformer
