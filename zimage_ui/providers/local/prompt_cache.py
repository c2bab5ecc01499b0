"""The text encoder's side of speed: prompt embeddings cached, and the encoder moved only to encode.

`PromptCache` keeps the embeddings of recent prompts on the device (an LRU), so a prompt seen
before skips the 4B-parameter text encoder; the pipeline takes them as `prompt_embeds=` /
`negative_prompt_embeds=` and gives the same pixels as the text. `TextEncoderShuttle` is the
16gb memory mode's half: the encoder waits on the CPU and visits the GPU for its forward only.

torch is imported inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

ENCODE_HEADROOM = 2**30  # bytes of GPU memory a text-encoder visit needs beyond its weights
# Each shuttled encoder's shuttle, for callers that run the encoder many times in a row.
_SHUTTLES: weakref.WeakKeyDictionary[Any, TextEncoderShuttle] = weakref.WeakKeyDictionary()


def _moved(value: Any, device: Any) -> Any:
    """Tensors anywhere in args, kwargs or a model output, moved to `device`."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, tuple):
        return tuple(_moved(item, device) for item in value)
    if isinstance(value, list):
        return [_moved(item, device) for item in value]
    if isinstance(value, dict):  # a transformers ModelOutput is an OrderedDict: update it in place
        for key in list(value.keys()):
            value[key] = _moved(value[key], device)
    return value


class TextEncoderShuttle:
    """Memory 16gb: the text encoder lives on the CPU and visits the GPU only for its forward.

    Hooks on the encoder itself, so every caller (the pipeline with prompt text, `PromptCache`)
    gets the same behaviour. When the GPU has no room for the visit it encodes on the CPU and
    moves the result to the GPU. `visits` and `cpu_runs` count what happened.
    """

    def __init__(self, encoder: Any, device: str, fits: Callable[[], bool] | None = None) -> None:
        import torch

        self.device = torch.device(device)
        self.weight_bytes = sum(p.numel() * p.element_size() for p in encoder.parameters())
        self._fits = fits or self._gpu_has_room
        self._visiting = False
        self._held = False
        self.visits = 0
        self.cpu_runs = 0
        encoder.register_forward_pre_hook(self._before, with_kwargs=True)
        encoder.register_forward_hook(self._after, with_kwargs=True)
        _SHUTTLES[encoder] = self

    @contextlib.contextmanager
    def held(self, encoder: Any) -> Iterator[Any]:
        """One visit for many forwards (a prompt written token by token): the encoder moves to the
        GPU once, stays for the block, and goes back after; where the GPU has no room, the block
        runs on the CPU. Yields the device the inputs belong on."""
        import torch

        room = self._arrive(encoder)
        self._held = True
        try:
            yield self.device if room else torch.device("cpu")
        finally:
            self._held = False
            if room:
                self._leave(encoder)

    def _arrive(self, encoder: Any) -> bool:
        """A visit starts: the encoder onto the GPU where it has room (True), else it stays."""
        if not self._fits():
            self.cpu_runs += 1
            return False
        encoder.to(self.device)
        self.visits += 1
        return True

    def _leave(self, encoder: Any) -> None:
        encoder.to("cpu")
        if self.device.type == "cuda":
            import torch

            torch.cuda.empty_cache()

    def _gpu_has_room(self) -> bool:
        import torch

        if self.device.type != "cuda":
            return True
        free, _ = torch.cuda.mem_get_info(self.device)
        spare = torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)
        return free + spare >= self.weight_bytes + ENCODE_HEADROOM

    def _before(self, module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        if self._held:  # `held` placed it for the whole block
            return None
        self._visiting = self._arrive(module)
        return None if self._visiting else (_moved(args, "cpu"), _moved(kwargs, "cpu"))

    def _after(self, module: Any, args: tuple, kwargs: dict, output: Any) -> Any:
        if self._held:
            return None
        if self._visiting:
            self._leave(module)
            return None
        return _moved(output, self.device)


def shuttle_of(encoder: Any) -> TextEncoderShuttle | None:
    """The shuttle moving this encoder (memory 16gb), or None."""
    return _SHUTTLES.get(encoder)


@dataclass(frozen=True)
class _Entry:
    encoder: weakref.ref[Any]  # the text encoder that made it: an id may be reused after a model is freed
    prompt_embeds: tuple
    negative_prompt_embeds: tuple


class PromptCache:
    """Prompt embeddings kept on the device, least recently used dropped first; thread-safe.

    The key is (model, prompt, negative prompt, guidance on, device, dtype), the model being the
    text encoder object and the checkpoint's name, so embeddings never cross models. Size 0:
    nothing kept (every call encodes). `encodes` counts text-encoder runs, `hits` cache hits.
    """

    def __init__(self, size: int) -> None:
        self.size = max(0, int(size))
        self.encodes = 0
        self.hits = 0
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def encode(
        self, pipeline: Any, prompt: str, negative_prompt: str | None, do_cfg: bool, device: Any = None
    ) -> tuple[list, list]:
        """(prompt_embeds, negative_prompt_embeds), to pass to the pipeline under those names.

        As `ZImagePipeline.encode_prompt` returns them: lists of one (tokens x hidden) tensor;
        the negative list is empty without guidance. A None negative with guidance is "" (as
        the pipeline does). Same pixels as passing the text.
        """
        import torch

        encoder = pipeline.text_encoder
        device = torch.device(device) if device is not None else pipeline._execution_device
        negative = (negative_prompt or "") if do_cfg else None
        model = (id(encoder), str(pipeline.config.get("_name_or_path", "")))
        key = (model, prompt, negative, bool(do_cfg), str(device), str(encoder.dtype))
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.encoder() is encoder:
                self._entries.move_to_end(key)
                self.hits += 1
                return list(entry.prompt_embeds), list(entry.negative_prompt_embeds)
            # Encoding under the lock: one text-encoder run at a time, never the same prompt twice.
            with torch.no_grad():
                positive, negatives = pipeline.encode_prompt(
                    prompt=[prompt],  # a fresh list: the pipeline rewrites it in place
                    device=device,
                    do_classifier_free_guidance=bool(do_cfg),
                    negative_prompt=[negative] if do_cfg else None,
                )
            self.encodes += 1
            entry = _Entry(weakref.ref(encoder), tuple(positive), tuple(negatives or ()))
            if self.size:
                self._entries[key] = entry
                self._entries.move_to_end(key)
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)
            return list(entry.prompt_embeds), list(entry.negative_prompt_embeds)
