"""Progress on long work: the one home of the progress bars (tqdm, a runtime dependency).

* :func:`progress_bar` -- a tqdm bar (``update``, ``set_postfix``, ``close``), used by
  training (batches, with the running losses);
* :func:`progress_callback` -- what ``SRModel.predict(progress=...)`` reports to: ``None``
  (no progress), the user's callable ``progress(done, total)``, or a bar counting the
  network evaluations.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

__all__ = ["progress_bar", "progress_callback"]

ProgressLike = Union[bool, None, Callable[[int, int], None]]


def progress_bar(total: int, desc: str, unit: str, leave: bool = True) -> Any:
    """A ``tqdm.auto`` bar of ``total`` steps (a notebook widget in Jupyter, text otherwise)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=leave)


class _Counter:
    """``progress(done, total)`` moving a bar to ``done``; ``close()`` closes the bar."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def __call__(self, done: int, total: int) -> None:
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def progress_callback(progress: ProgressLike, total: int,
                      desc: str = "diffusion") -> Optional[Callable[[int, int], None]]:
    """The reporter of ``progress``: ``None`` for ``False``/``None``, the callable itself, or
    (``True``) a bar of ``total`` network evaluations with a ``close()`` method."""
    if progress is False or progress is None:
        return None
    if callable(progress):
        return progress
    return _Counter(progress_bar(total, desc, "eval"))
