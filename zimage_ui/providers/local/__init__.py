"""The local engine: the diffusers pipeline and everything it needs (loading, devices, speed
options, ZeroGPU, previews, pipeline variants, the prompt cache, the tiny model, ControlNet).
torch and diffusers are imported lazily inside these modules."""
