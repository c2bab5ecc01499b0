"""The local pipeline's text encoder as a prompt writer: the prompt enhancer with no endpoint.

Z-Image's text encoder is Qwen3-4B. Its checkpoint's config names `Qwen3ForCausalLM` and ties the
output head to the input embeddings (`tie_word_embeddings: true`); diffusers loads it as the bare
`Qwen3Model`, without a head. Put back inside a `Qwen3ForCausalLM` (built on the meta device, so
nothing is allocated) whose `lm_head` is the very tensor of `embed_tokens`, it is the whole chat
model again: no download, no new weights, no second copy in memory.

It writes as transformers documents for Qwen3: the chat template with `enable_thinking=False`,
`generate` with the sampling Qwen recommends for non-thinking answers (temperature 0.7, top-p
0.8, top-k 20), the new tokens decoded without special tokens. At most MAX_NEW_TOKENS, within the
enhancer's deadline (`max_time`), and Stop ends it at the next token.

It runs where the pipeline runs and waits in the same line for the device as generations; on
ZeroGPU in its own `spaces.GPU` function, which takes and returns plain strings. In memory mode
16gb the encoder visits the GPU once for the whole answer, not once per token.

The tiny model's encoder has random weights: what it writes is noise. That shows the plumbing
works and nothing more, and its name says so.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Iterator
from typing import Any

from zimage_ui.cancel import CancelToken
from zimage_ui.errors import Cancelled, JobFailed, ProviderError
from zimage_ui.providers.local import zerogpu
from zimage_ui.providers.local.diffusers_local import pipeline_slot
from zimage_ui.providers.local.generation import StopFlag
from zimage_ui.providers.local.prompt_cache import shuttle_of

log = logging.getLogger(__name__)

MAX_NEW_TOKENS = 400  # about 150 words of English, 250 characters of Chinese: the system prompt's ask
MIN_NEW_TOKENS = 8  # an answer that ends at once is no prompt
SAMPLING = {"do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20}  # Qwen3, non-thinking
END_OF_TURN = "<|im_end|>"
# ZeroGPU's reservation for one rewrite: a fresh worker, then 400 tokens of a 4B model (an
# estimate with margin, like zerogpu's, to be replaced by a measurement on a lent H200).
REWRITE_GPU_S = 30


def causal_lm(encoder: Any) -> Any:
    """The text encoder as `Qwen3ForCausalLM`, sharing every weight with it (the head tied to the
    input embeddings, as the checkpoint ties them). JobFailed for an encoder that cannot be one."""
    import torch
    from transformers import Qwen3ForCausalLM, Qwen3Model

    if not isinstance(encoder, Qwen3Model):
        raise JobFailed("prompt writer", f"the text encoder is a {type(encoder).__name__}, not Qwen3")
    config = encoder.config
    if not config.tie_word_embeddings:
        raise JobFailed(
            "prompt writer",
            "this text encoder's checkpoint has an output head of its own, which the image pipeline "
            "does not load: set ZIMAGE_ENHANCER_BASE_URL to an endpoint instead",
        )
    with torch.device("meta"):
        model = Qwen3ForCausalLM(config)
    model.model = encoder
    model.lm_head.weight = encoder.embed_tokens.weight
    return model.eval()


class _StopWhen:
    """A transformers stopping criterion: every sequence ends once `stop` is cancelled."""

    def __init__(self, stop: StopFlag) -> None:
        self._stop = stop

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full(
            (input_ids.shape[0],), self._stop.cancelled, dtype=torch.bool, device=input_ids.device
        )


@contextlib.contextmanager
def _placed(pipeline: Any) -> Iterator[Any]:
    """The device the inputs go to, with the encoder placed for the whole answer."""
    encoder = pipeline.text_encoder
    shuttle = shuttle_of(encoder)
    if shuttle is None:  # on its device, or moved there by diffusers' offload hook on its forward
        yield pipeline._execution_device
        return
    with shuttle.held(encoder) as device:
        yield device


def write(
    pipeline: Any, system: str, prompt: str, *, limit_s: float, stop: StopFlag, seed: int | None = None
) -> str:
    """The encoder's answer to the system prompt and the person's prompt (the raw text: the
    enhancer cleans it). `seed` makes the sampling repeatable; None draws one."""
    import torch

    tokenizer = pipeline.tokenizer
    model = causal_lm(pipeline.text_encoder)
    messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
    text = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    end = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    ends = [token for token in (end, tokenizer.eos_token_id) if isinstance(token, int)]
    seed = random.randrange(2**63) if seed is None else seed
    with _placed(pipeline) as device, torch.no_grad(), torch.random.fork_rng(devices=_cuda_indices(device)):
        torch.manual_seed(seed)
        inputs = tokenizer([text], return_tensors="pt").to(device)
        output = model.generate(
            **inputs,
            **SAMPLING,
            max_new_tokens=MAX_NEW_TOKENS,
            min_new_tokens=MIN_NEW_TOKENS,
            max_time=limit_s,
            eos_token_id=ends,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else ends[-1],
            stopping_criteria=[_StopWhen(stop)],
        )
    if stop.cancelled:
        raise Cancelled("prompt writer", "stopped")
    return tokenizer.decode(output[0][inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def _cuda_indices(device: Any) -> list[int]:
    """The CUDA devices whose random state `fork_rng` keeps (none off CUDA)."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


async def rewrite(
    provider: Any, system: str, prompt: str, *, limit_s: float, cancel: CancelToken, seed: int | None = None
) -> str:
    """`write` with the local provider's pipeline, in its line for the device (a thread, or the
    ZeroGPU worker). `provider`: a local pipeline provider (`pipeline_slot`, `on_gpu`, `id`)."""
    slot = provider.pipeline_slot
    if not await slot.queue.acquire(cancel, lambda place: None):
        raise Cancelled("prompt writer", "stopped while waiting in line")
    task = _ZERO_GPU_TASK if provider.on_gpu else None

    def work(stop: StopFlag) -> str:
        if task is not None:
            return _from_worker(task(provider.id, system, prompt, limit_s, seed))
        return write(slot.get(), system, prompt, limit_s=limit_s, stop=stop, seed=seed)

    return await slot.run_holding(work, cancel)


# ---- ZeroGPU: the function its forked worker runs ------------------------------------------


def _gpu_rewrite(
    provider_id: str, system: str, prompt: str, limit_s: float, seed: int | None
) -> tuple[str, str]:
    """One rewrite in ZeroGPU's worker: ("text", answer) or ("failed", why); plain values only
    (an exception would cross as its class name alone)."""
    try:
        pipeline = pipeline_slot(provider_id).get()
        return ("text", write(pipeline, system, prompt, limit_s=limit_s, stop=CancelToken(), seed=seed))
    except ProviderError as exc:  # loading it, refusing it: the message says what to do
        return ("failed", exc.detail)
    except Exception as exc:  # a bug: its type and message cross, its traceback is logged here
        log.exception("the prompt writer failed in the ZeroGPU worker")
        return ("failed", f"{type(exc).__name__}: {exc}")


def _from_worker(answer: tuple[str, str]) -> str:
    kind, text = answer
    if kind != "text":
        raise JobFailed("prompt writer", text)
    return text


def _rewrite_duration(*args: Any, **kwargs: Any) -> int:
    return REWRITE_GPU_S


# Decorated once, at import: ZeroGPU registers `spaces.GPU` functions when the app starts.
_ZERO_GPU_TASK = zerogpu.gpu_function(_gpu_rewrite, duration=_rewrite_duration)
