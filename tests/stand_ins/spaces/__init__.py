"""A stand-in for Hugging Face's `spaces` package: ZeroGPU's boundary, without a GPU or a scheduler.

What it does is what `spaces` 0.51.3 does (`spaces/zero/decorator.py`, `spaces/zero/wrappers.py`),
so code that works across this boundary works across ZeroGPU's:

- `GPU(task=None, *, duration=None, size=None)`: the task itself unless SPACES_ZERO_GPU was true
  when this module was imported; a coroutine function is refused (NotImplementedError).
- Each call works out its duration (`duration(*args, **kwargs)` when it is callable, 60 s when
  unset; a number or a timedelta) and pickles (args, kwargs) in the caller: a closure, a lock or
  an Event fails there, before anything runs. The task runs in a worker forked from the caller
  (multiprocessing's "fork"), which unpickles them.
- A generator task's values are pickled back one by one and yielded by the caller's generator.
  Closing that generator (GeneratorExit at its yield) sets the worker's stop event; the worker
  looks at it after each value and then closes the task's generator; close() returns once the
  worker is done with the task.
- A regular task's return value comes back pickled.
- An exception in the worker reaches the caller as `gradio.Error(<its class name>)`, titled
  "ZeroGPU worker error" (a gradio.Error keeps its message); a worker that dies is
  `gradio.Error("GPU task aborted")`.

Unlike ZeroGPU it forks a fresh worker for every call (ZeroGPU reuses an idle one, which then
does not see what the app changed since its fork) and prints one line per call to stderr, which
tests read: `spaces stand-in: <task> duration=<s>s values=<n> stopped=<bool>`.
`calls` keeps the same facts for tests in this process. `aoti_blocks_load` only checks its
module's `_repeated_blocks`, as the real one does first, and records the call in `aoti_calls`.
"""

from __future__ import annotations

import inspect
import multiprocessing
import os
import pickle
import sys
import traceback
from collections.abc import Callable, Generator
from datetime import timedelta
from functools import partial, wraps
from typing import Any

_fork = multiprocessing.get_context("fork")
_ZERO_GPU = os.environ.get("SPACES_ZERO_GPU", "").lower() in {"1", "t", "true"}
DEFAULT_DURATION_S = 60

forked = False  # True in a worker: a decorated function called there runs directly
calls: list[dict[str, Any]] = []
aoti_calls: list[dict[str, Any]] = []


def GPU(
    task: Callable[..., Any] | None = None,
    *,
    duration: Any = None,
    size: str | None = None,
    **kwargs: Any,
) -> Any:
    if not callable(task):
        if task is not None:  # @spaces.GPU(45)
            duration = task
        return partial(_gpu, duration=duration)
    return _gpu(task, duration)


def _gpu(task: Callable[..., Any], duration: Any) -> Callable[..., Any]:
    if not _ZERO_GPU:
        return task
    if inspect.iscoroutinefunction(task):
        raise NotImplementedError
    decorated = (
        _generator_wrapper(task, duration) if inspect.isgeneratorfunction(task) else _wrapper(task, duration)
    )
    decorated.zerogpu = None  # type: ignore[attr-defined]
    return decorated


def _seconds(duration: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> float:
    value = duration(*args, **kwargs) if callable(duration) else duration
    if value is None:
        return DEFAULT_DURATION_S
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"duration must be seconds or a timedelta, not {type(value).__name__}")


def _error(message: str, title: str = "ZeroGPU worker error") -> Exception:
    try:
        import gradio as gr
    except ImportError:
        return RuntimeError(f"{title}: {message}")
    return gr.Error(message, title=title, print_exception=False)


class _Worker:
    """One forked worker running one call; messages come back over a pipe, pickled."""

    def __init__(self, task: Callable[..., Any], payload: bytes, generator: bool) -> None:
        self.stop = _fork.Event()
        receive, self._send = _fork.Pipe(duplex=False)
        self._receive = receive
        self.process = _fork.Process(
            target=_work, args=(task, payload, generator, self._send, self.stop), daemon=True
        )
        self.process.start()
        self._send.close()  # the worker holds the only sending end: EOF once it is gone

    def message(self) -> tuple[Any, ...]:
        try:
            return pickle.loads(self._receive.recv_bytes())
        except EOFError:
            raise _error("GPU task aborted") from None

    def end(self) -> None:
        self.process.join()
        self._receive.close()


def _work(task: Callable[..., Any], payload: bytes, generator: bool, send: Any, stop: Any) -> None:
    global forked
    forked = True
    args, kwargs = pickle.loads(payload)

    def put(*message: Any) -> bool:
        try:
            send.send_bytes(pickle.dumps(message))
        except Exception as exc:  # an unpicklable value: the caller gets its error instead
            send.send_bytes(pickle.dumps(("error", type(exc).__name__, traceback.format_exc())))
            return False
        return True

    values = 0
    try:
        if generator:
            gen = task(*args, **kwargs)
            for value in gen:
                if stop.is_set():
                    gen.close()
                    break
                values += 1
                if not put("value", value):
                    break
        else:
            values = 1
            put("value", task(*args, **kwargs))
    except Exception as exc:
        traceback.print_exc()
        put("error", type(exc).__name__, traceback.format_exc())
    print(
        f"spaces stand-in: {task.__name__} values={values} stopped={stop.is_set()}",
        file=sys.stderr,
        flush=True,
    )
    put("end")


def _start(task: Callable[..., Any], duration: Any, args: Any, kwargs: Any, generator: bool) -> _Worker:
    seconds = _seconds(duration, args, kwargs)
    payload = pickle.dumps((args, kwargs))  # what ZeroGPU's queue does: it fails here, in the caller
    calls.append({"task": task.__name__, "duration": seconds})
    print(f"spaces stand-in: {task.__name__} duration={seconds:g}s", file=sys.stderr, flush=True)
    return _Worker(task, payload, generator)


def _raise(message: tuple[Any, ...]) -> None:
    _kind, name, text = message
    print(text, file=sys.stderr, flush=True)
    raise _error(name)


def _wrapper(task: Callable[..., Any], duration: Any) -> Callable[..., Any]:
    @wraps(task)
    def handler(*args: Any, **kwargs: Any) -> Any:
        if forked:
            return task(*args, **kwargs)
        worker = _start(task, duration, args, kwargs, generator=False)
        result: Any = None
        try:
            while (message := worker.message())[0] != "end":
                if message[0] == "error":
                    _raise(message)
                result = message[1]
        finally:
            worker.end()
        return result

    return handler


def _generator_wrapper(task: Callable[..., Any], duration: Any) -> Callable[..., Generator[Any, None, None]]:
    @wraps(task)
    def handler(*args: Any, **kwargs: Any) -> Generator[Any, None, None]:
        if forked:
            yield from task(*args, **kwargs)
            return
        worker = _start(task, duration, args, kwargs, generator=True)
        try:
            while (message := worker.message())[0] != "end":
                if message[0] == "error":
                    _raise(message)
                try:
                    yield message[1]
                except GeneratorExit:
                    worker.stop.set()
                    while worker.message()[0] != "end":  # ZeroGPU waits for the worker's end too
                        pass
                    raise
        finally:
            worker.end()

    return handler


def aoti_blocks_load(module: Any, repo_id: str, variant: str | None = None) -> None:
    if (blocks := getattr(module, "_repeated_blocks", None)) is None:
        raise RuntimeError("aoti_blocks_load only works with modules that expose _repeated_blocks")
    aoti_calls.append({"module": module, "repo_id": repo_id, "variant": variant, "blocks": list(blocks)})
