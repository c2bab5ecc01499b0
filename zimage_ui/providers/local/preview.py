"""A cheap RGB preview of a Z-Image latent: a fixed linear projection, no VAE pass.

Z-Image uses the Flux-style 16-channel VAE. ComfyUI previews that latent space with
a 16x3 matrix plus a bias (`latent_rgb_factors`, `latent_rgb_factors_bias` of class
`Flux` in comfy/latent_formats.py, https://github.com/Comfy-Org/ComfyUI), applied in
`latent_preview.Latent2RGBPreviewer` to the sampler's latents and mapped from -1..1
to 0..1 by `preview_to_image`. ComfyUI samples in the *model* space
(`process_in`: `(vae_latent - shift_factor) * scaling_factor`), so the factors were
fit there. That is the space diffusers' `ZImagePipeline` holds `latents` in during
the denoising loop (its VAE decode undoes it with `latents / scaling_factor +
shift_factor`), so the callback's latents are projected as they are: undoing the
scaling first would multiply their spread by 1/0.3611, about 2.8, and saturate
the preview.

Measured on 2 shared CPU cores (torch CPU, best of 20 rounds of 100): one preview of a
1024x1024 image's 1x16x128x128 latent, tensor to 256x256 PIL image, 0.53 ms; with the
step callback's x0 estimate first, 1.25 ms. At 2048x2048 (a 256x256 latent): 0.86 ms
and 2.9 ms. On a GPU the projection runs there and only 8-bit RGB is copied back.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

PREVIEW_MAX_SIDE = 256

# comfy/latent_formats.py, class Flux (ComfyUI): rows are latent channels, columns R, G, B.
FLUX_LATENT_RGB_FACTORS = (
    (-0.0346, 0.0244, 0.0681),
    (0.0034, 0.0210, 0.0687),
    (0.0275, -0.0668, -0.0433),
    (-0.0174, 0.0160, 0.0617),
    (0.0859, 0.0721, 0.0329),
    (0.0004, 0.0383, 0.0115),
    (0.0405, 0.0861, 0.0915),
    (-0.0236, -0.0185, -0.0259),
    (-0.0245, 0.0250, 0.1180),
    (0.1008, 0.0755, -0.0421),
    (-0.0515, 0.0201, 0.0011),
    (0.0428, -0.0012, -0.0036),
    (0.0817, 0.0765, 0.0749),
    (-0.1264, -0.0522, -0.1103),
    (-0.0280, -0.0881, -0.0499),
    (-0.1262, -0.0982, -0.0778),
)
FLUX_LATENT_RGB_BIAS = (-0.0329, -0.0718, -0.0851)


def _first_latent(latents: Any) -> Any:
    """The first latent of a batch, (channels, h, w), as a float32 torch tensor (a view where it can)."""
    import torch

    latent = torch.as_tensor(latents).detach()
    if latent.ndim == 4:
        latent = latent[0]
    if latent.ndim != 3 or min(latent.shape) == 0:
        raise ValueError(f"expected a latent of (batch,) channels, h, w: got {tuple(latent.shape)}")
    return latent.float()


def preview_size(height: int, width: int, max_side: int = PREVIEW_MAX_SIDE) -> tuple[int, int]:
    """(width, height) of the preview: the latent's aspect ratio, the long side `max_side`."""
    scale = max_side / max(height, width)
    return max(1, round(width * scale)), max(1, round(height * scale))


def latent_to_rgb(latents: Any, *, max_side: int = PREVIEW_MAX_SIDE) -> Image.Image:
    """A small RGB preview of the first latent of a batch (batch, channels, h, w).

    16 channels: the Flux latent-to-RGB projection, for latents in the pipeline's own
    (scaled and shifted) space, as `ZImagePipeline` hands them to its step callback.
    Any other channel count: the first three channels (fewer repeated), each
    normalised to 0..1 on its own. Bilinear resize to `max_side` on the long side.
    A torch tensor on any device, in any float dtype, or a numpy array. The projection
    runs where the latent is, so only the small 8-bit RGB result crosses to the CPU;
    the image shares no memory with the input, which is never changed.
    """
    import torch

    latent = _first_latent(latents)
    channels, height, width = latent.shape
    if channels == 16:
        factors = torch.tensor(FLUX_LATENT_RGB_FACTORS, dtype=torch.float32, device=latent.device)
        bias = torch.tensor(FLUX_LATENT_RGB_BIAS, dtype=torch.float32, device=latent.device)
        rgb = torch.einsum("chw,cr->hwr", latent, factors) + bias
        rgb = (rgb + 1.0) * 0.5  # the projection's -1..1 to 0..1, as ComfyUI does
    else:
        picked = latent[[min(index, channels - 1) for index in range(3)]]
        low = picked.amin(dim=(1, 2), keepdim=True)
        spread = picked.amax(dim=(1, 2), keepdim=True) - low
        rgb = torch.where(spread > 0, (picked - low) / spread.clamp_min(1e-12), 0.5).permute(1, 2, 0)
    rgb = torch.nan_to_num(rgb, nan=0.5)
    pixels = (rgb.clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()
    image = Image.fromarray(np.ascontiguousarray(pixels))
    size = preview_size(height, width, max_side)
    if size != image.size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    return image


def estimate_clean_latents(previous: Any, current: Any, sigma_previous: float, sigma_current: float) -> Any:
    """The denoised (x0) latent implied by one flow-matching Euler step from `previous` to `current`.

    With x_sigma = (1 - sigma) * x0 + sigma * noise, the step moves along the velocity
    v = (current - previous) / (sigma_current - sigma_previous), and x0 = current - sigma_current * v.
    Exact for the deterministic Euler step (FlowMatchEulerDiscreteScheduler's default);
    `current` itself when sigma_current is 0 (the last step). Works on torch tensors and
    numpy arrays alike; returns a new one, never a view of either input.
    """
    step = sigma_current - sigma_previous
    if sigma_current == 0 or abs(step) < 1e-6:
        return current * 1.0  # a copy
    velocity = (current - previous) / step
    return current - sigma_current * velocity
