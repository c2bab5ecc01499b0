"""LoRAs the local model takes by https URL or by Hugging Face hub id: downloaded once, then cached.

A LoRA reference is a local `.safetensors` file, an https URL, or a model id (`params.lora_source`).
Before a local run queues for the GPU, `download_loras` turns each URL or hub id into a file in the
cache folder (`ZIMAGE_LORA_CACHE`, else the user cache folder's `loras/`), through the HTTP engine's
size-capped streaming download (`HttpSession.download_file`: never held in memory, written under a
temporary name and renamed once whole). The cache file is named by a hash of the reference, so a
second run makes no request at all. A download shares the run's deadline (`ZIMAGE_TIMEOUT_S`) and its Stop:
a visitor's slow link cannot hold a run slot any longer than a run may last.

Hub ids: `owner/name/file.safetensors` is `{HF_ENDPOINT}/owner/name/resolve/main/file.safetensors`;
`owner/name` lists the repo (`GET {HF_ENDPOINT}/api/models/owner/name`) and takes its only
`.safetensors` file (`pytorch_lora_weights.safetensors` where there are several). `HF_TOKEN` (from
the run's KeyRing) goes to the hub endpoint only, as a bearer token, and never into a message. A
bare id without "/" (a provider's own LoRA model id, such as Scenario's `model_...`) is refused by
the local model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

from zimage_ui import env
from zimage_ui.errors import Cancelled, InvalidParams, ProviderError
from zimage_ui.params import LoraRef

if TYPE_CHECKING:
    from zimage_ui.cancel import CancelToken
    from zimage_ui.net.http import HttpEngine

CACHE_ENV = "ZIMAGE_LORA_CACHE"
CACHE_GB_ENV = "ZIMAGE_LORA_CACHE_GB"
TOKEN_ENV = "HF_TOKEN"
DEFAULT_HUB = "https://huggingface.co"
PREFERRED_FILE = "pytorch_lora_weights.safetensors"  # what diffusers' save_lora_weights writes
KEY_HINT = "HF_TOKEN (a gated or private repo needs a token that may read it)"
MAX_LISTED = 10
MAX_LORA_BYTES = 4 * 2**30  # a LoRA file, downloaded or local; the largest published Z-Image LoRA is ~1 GB

Report = Callable[[str], None]


def cache_dir() -> Path:
    """Where downloaded LoRAs are kept: `ZIMAGE_LORA_CACHE`, else `<user cache>/zimage-ui/loras`."""
    configured = env.raw(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("zimage-ui")) / "loras"


def hub_endpoint() -> str:
    """The hub's base URL: `HF_ENDPOINT` (a mirror, or a test server), else huggingface.co."""
    return (env.raw("HF_ENDPOINT") or DEFAULT_HUB).rstrip("/")


def remote(lora: LoraRef) -> bool:
    """A LoRA the local model downloads (an https URL or a model id), not a local file."""
    return lora.source != "file"


def refuse_provider_ids(loras: Iterable[LoraRef], label: str) -> None:
    """A model id without "/" is a provider's own LoRA id (Scenario's `model_...`): not on the hub."""
    for lora in loras:
        if lora.source == "id" and "/" not in lora.ref:
            raise InvalidParams(
                {
                    "loras": f"{label} can't use {lora.ref[:80]!r}: it is a provider's own LoRA model id, "
                    "not a Hugging Face repo; give 'owner/name' (or 'owner/name/file.safetensors'), an "
                    "https URL or a local .safetensors file, or run it on that provider"
                }
            )


def _check_hub_id(ref: str) -> None:
    if any(part in {"", ".", ".."} for part in ref.split("/")):
        raise InvalidParams(
            {"loras": f"{ref[:80]!r} is not a hub repo id: give 'owner/name' or 'owner/name/FILE'"}
        )


def _key(lora: LoraRef) -> str:
    """What the cache file is named after: the URL, or the hub endpoint and repo id."""
    return lora.ref if lora.source == "url" else f"hub:{hub_endpoint()}/{lora.ref}"


def cached_path(lora: LoraRef) -> Path:
    digest = hashlib.sha256(_key(lora).encode()).hexdigest()[:32]
    return cache_dir() / f"{digest}.safetensors"


def display_name(lora: LoraRef) -> str:
    """The LoRA's A1111 name (`<lora:name:scale>`): the file's stem, else the repo's name."""
    if lora.source == "url":
        last = unquote(urlsplit(lora.ref).path.rstrip("/").rpartition("/")[2])
    else:
        last = lora.ref.rstrip("/").rpartition("/")[2]
    stem = last[: -len(".safetensors")] if last.lower().endswith(".safetensors") else last
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:80] or "lora"


def _shown(ref: str) -> str:
    """A URL as it may be shown: its query and userinfo (they can hold credentials) left out."""
    if "://" not in ref:
        return ref[:200]
    parts = urlsplit(ref)
    return f"{parts.scheme}://{parts.hostname or ''}{parts.path}"[:200]


def _hub_file_url(repo: str, filename: str) -> str:
    return f"{hub_endpoint()}/{repo}/resolve/main/{quote(filename)}"


def pick_file(repo: str, files: list[str]) -> str:
    """The repo's LoRA file: its only .safetensors, else `pytorch_lora_weights.safetensors`."""
    weights = [name for name in files if name.lower().endswith(".safetensors")]
    if len(weights) == 1:
        return weights[0]
    if PREFERRED_FILE in weights:
        return PREFERRED_FILE
    if not weights:
        raise InvalidParams({"loras": f"the hub repo {repo!r} has no .safetensors file: give another LoRA"})
    listed = ", ".join(weights[:MAX_LISTED]) + (
        f" and {len(weights) - MAX_LISTED} more" * (len(weights) > MAX_LISTED)
    )
    raise InvalidParams(
        {
            "loras": f"the hub repo {repo!r} has {len(weights)} .safetensors files ({listed}): "
            f"name one, as '{repo}/FILE.safetensors'"
        }
    )


async def download_loras(
    loras: Iterable[LoraRef],
    engine: HttpEngine | None = None,
    report: Report | None = None,
    cancel: CancelToken | None = None,
    token: str | None = None,
) -> dict[str, str]:
    """Each URL or hub-id LoRA as a local file path, by reference: from the cache, else downloaded.

    InvalidParams naming `loras` on any problem (refused, missing, too large); a half download is
    never left in the cache. `report`: a line of progress text for each download. `token`: the
    run's `HF_TOKEN` from its KeyRing (so a page visitor gets the server's only where
    `ZIMAGE_SERVER_KEYS` allows), sent to the hub endpoint only. `engine`: tests.
    """
    from zimage_ui.net.http import HttpEngine

    wanted = [lora for lora in loras if remote(lora)]
    refuse_provider_ids(wanted, "the local model")
    for lora in wanted:
        if lora.source == "id":
            _check_hub_id(lora.ref)
    paths: dict[str, str] = {}
    missing: list[LoraRef] = []
    for lora in wanted:
        path = cached_path(lora)
        if path.is_file():
            path.touch()  # recently used: the last to go when the cache is trimmed
            paths[lora.ref] = str(path)
        elif lora.ref not in {m.ref for m in missing}:
            missing.append(lora)
    if not missing:
        return paths
    engine = engine or HttpEngine()
    token = token.strip() if token and token.strip() else None
    hub = urlsplit(hub_endpoint())
    hub_headers = {"Authorization": f"Bearer {token}"} if token else {}

    def headers_for(url: str) -> dict[str, str]:
        parts = urlsplit(url)
        same = (parts.scheme, parts.netloc) == (hub.scheme, hub.netloc)
        return hub_headers if same else {}

    async with engine.session(
        "LoRA download", headers=hub_headers, secrets=(token,) if token else (), key_hint=KEY_HINT,
        cancel=cancel, public_only=True, trusted_origins=[hub_endpoint()],
    ) as session:  # fmt: skip
        for lora in missing:
            name = display_name(lora)
            try:
                if lora.source == "url":
                    url = lora.ref
                elif lora.ref.count("/") == 2:
                    owner, repo, filename = lora.ref.split("/")
                    url = _hub_file_url(f"{owner}/{repo}", filename)
                else:
                    answer = await session.get_json(f"{hub_endpoint()}/api/models/{lora.ref}")
                    siblings = answer.get("siblings") if isinstance(answer, dict) else None
                    files = [
                        str(item["rfilename"])
                        for item in siblings or []
                        if isinstance(item, dict) and isinstance(item.get("rfilename"), str)
                    ]
                    url = _hub_file_url(lora.ref, pick_file(lora.ref, files))
                last = [-1]

                def progress(done: int, total: int | None, name: str = name, last: list[int] = last) -> None:
                    step = done // (64 * 2**20)
                    if report and step != last[0]:
                        last[0] = step
                        of = f" of {total / 2**20:.0f}" if total else ""
                        report(f"downloading LoRA {name}: {done / 2**20:.0f}{of} MB")

                if report:
                    report(f"downloading LoRA {name}")
                await session.download_file(
                    url, cached_path(lora), cap=MAX_LORA_BYTES, headers=headers_for(url),
                    progress=progress, what="LoRA",
                )  # fmt: skip
            except Cancelled:
                raise
            except ProviderError as exc:
                raise InvalidParams({"loras": f"LoRA {_shown(lora.ref)!r}: {exc.detail}"}) from None
            paths[lora.ref] = str(cached_path(lora))
    trim_cache(keep={Path(path) for path in paths.values()})
    return paths


def cache_limit_bytes() -> int:
    """The most the LoRA cache holds: `ZIMAGE_LORA_CACHE_GB` (default 20), so visitors' downloads
    can't fill the server's disk; an unreadable value is the default."""
    gigabytes = float(env.get(CACHE_GB_ENV))
    return int(max(gigabytes, 0.0) * 2**30)


def trim_cache(keep: set[Path], limit: int | None = None) -> list[Path]:
    """Delete the least recently used cached LoRAs (never those in `keep`, this run's) until the
    cache is within its limit; the deleted files."""
    limit = cache_limit_bytes() if limit is None else limit
    files = [(path.stat(), path) for path in cache_dir().glob("*.safetensors") if path.is_file()]
    total = sum(stat.st_size for stat, _ in files)
    deleted: list[Path] = []
    for stat, path in sorted(files, key=lambda item: item[0].st_mtime):
        if total <= limit:
            break
        if path in keep:
            continue
        path.unlink(missing_ok=True)
        total -= stat.st_size
        deleted.append(path)
    return deleted
