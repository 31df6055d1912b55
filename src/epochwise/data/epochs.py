"""The steps of each epoch, with the ``steps_per_epoch`` rule."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from typing import Any

from .. import distributed
from .arrays import ArrayBatches
from .structures import Batch

_END = object()


class EpochIterator:
    """Steps of each epoch, with F13's rule for ``steps_per_epoch``.

    Without ``steps`` every epoch is a fresh pass. With ``steps`` the iterator carries over between
    epochs and starts the data again when it runs out: at an epoch's start silently (Keras 3: data that
    ends exactly at an epoch boundary), mid-epoch by cutting that epoch short (one warning per fit). A
    one-shot generator that has run dry is an error. Without ``carry_over`` (validation and evaluation,
    F14) every pass starts at the beginning, capped at ``steps``. ``epoch(skip)`` starts an epoch after
    its first ``skip`` batches (a resumed run).
    """

    def __init__(
        self, batches: Iterable[Batch], steps: int | None = None, *, what: str = "training data", eval_shard: bool = False,
        carry_over: bool = True, steps_name: str = "steps_per_epoch",
    ) -> None:
        self.batches, self.steps, self.what, self.steps_name = batches, steps, what, steps_name
        self.carry_over = carry_over  # False (validation, F14): every pass starts at the beginning of the data
        # under torchrun a rank's evaluation shard may be empty (fewer samples than processes): that rank
        # runs no batch and adds nothing to the reduced sums, instead of failing while the others wait
        self.empty_ok = eval_shard and distributed.is_distributed()
        self._it: Iterator[Batch] | None = None
        self._warned = False
        source = getattr(batches, "source", batches)
        self.one_shot = isinstance(source, Iterator)  # a generator cannot be restarted
        self.exhausted = False
        self.generator = getattr(batches, "generator", None) or getattr(source, "generator", None)

    def describe(self) -> list[str]:
        """The run plan's lines on where the batches are read from (memory-mapped arrays)."""
        return self.batches.describe() if isinstance(self.batches, ArrayBatches) else []

    def head(self, k: int) -> Any:
        """The first ``k`` rows of array input's x (for the input dtype check); None for other sources."""
        return self.batches.data.head(k) if isinstance(self.batches, ArrayBatches) else None

    def num_steps(self) -> int | None:
        if self.steps is not None:
            return self.steps
        try:
            return len(self.batches)  # type: ignore[arg-type]
        except TypeError:
            return None

    def __iter__(self) -> Iterator[tuple[int, Batch]]:
        return self.epoch(0)

    def _fresh(self, skip: int) -> Iterator[Batch]:
        if self.one_shot and self.exhausted:
            self._ran_out_at_start()
        if isinstance(self.batches, ArrayBatches):
            return self.batches.iterate(skip)
        it = iter(self.batches)
        for _ in range(skip):
            next(it, None)
        return it

    def epoch(self, skip: int = 0) -> Iterator[tuple[int, Batch]]:
        if self.steps is None:
            return self._full_pass(self._fresh(skip), skip)
        if self._it is None or not self.carry_over:
            self._it = self._fresh(0)
            for _ in range(skip):
                next(self._it, None)
        return self._capped(skip)

    def _full_pass(self, it: Iterator[Batch], skip: int) -> Iterator[tuple[int, Batch]]:
        step = skip - 1
        for step, batch in enumerate(it, start=skip):
            yield step, batch
        if step < 0:
            self._ran_out_at_start()
        self.exhausted = True

    def _capped(self, skip: int) -> Iterator[tuple[int, Batch]]:
        it = self._it
        assert it is not None
        for step in range(skip, self.steps or 0):
            try:
                batch = next(it)
            except StopIteration:
                self._it, self.exhausted = None, True
                if step > skip:  # ran out mid-epoch: this epoch is cut short, the next starts the data again
                    self._warn_cut_short(step)
                    return
                # ran out exactly at the epoch's end: the data starts again (an exhausted generator cannot)
                it = self._it = self._fresh(0)
                batch = next(it, _END)
                if batch is _END:
                    self._it = None
                    self._ran_out_at_start()
                    return
            yield step, batch

    def _warn_cut_short(self, step: int) -> None:
        if not self._warned:
            self._warned = True
            then = ("the epoch was cut short and the next one starts the data again (rule F13)" if self.carry_over
                    else "the pass ended there")
            warnings.warn(
                f"Your input ran out of data after {step} of {self.steps_name}={self.steps} steps ({self.what}); "
                f"{then}. Make {self.steps_name} at most the number of batches, or let it default.",
                UserWarning,
                stacklevel=5,
            )

    def _ran_out_at_start(self) -> None:
        if self.empty_ok and not self.one_shot:
            return
        if self.one_shot:
            raise ValueError(
                f"the {self.what} is a generator that is already exhausted, so this epoch has no batches. "
                "Pass a re-iterable object (a DataLoader, a Dataset, a list of batches) or an infinite generator "
                "with steps_per_epoch."
            )
        raise ValueError(f"the {self.what} yielded no batches")


