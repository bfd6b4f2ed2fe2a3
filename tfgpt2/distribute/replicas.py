"""Independent batches of work on every replica of a `tf.distribute`
strategy, with the results back in order: what file generation and
evaluation run on, where no step needs the others' gradients.

Within a process, one thread per local replica device (a MirroredStrategy's
GPUs, or logical CPU devices) pulls the next batch from a shared queue, so a
fast replica is never held back by a slow one; compiled TF programs release
the GIL, so the replicas run at once. Each accelerator gets its own copy of
the weights; CPU replicas share one (`Replicas.models`). Across the workers of a
MultiWorkerMirroredStrategy, batch `i` belongs to worker `i % workers`; the
workers swap results one round (one batch each) at a time with an
all-reduce of the strategy's own collectives, so every worker ends with
every result and no shared file system is needed. A worker keeps computing
its next batches while it waits for a round (up to `AHEAD` per replica), so
it waits only when it is that far ahead of the slowest.

Results are numeric arrays (float64 carries token ids and float32 scores
exactly). Which replica ran a batch never changes its result: the caller's
batches are fixed by their index alone.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable, Iterator

import numpy as np

AHEAD = 2  # batches a replica may finish before the caller takes them


class Replicas:
    """The replicas of `strategy` (default: this process's default device)."""

    def __init__(self, strategy=None):
        self.strategy = strategy
        self.devices = _local_devices(strategy)
        self.worker_index, self.num_workers, self.chief_index = _cluster_position(strategy)
        self._copies: dict[int, list] = {}

    @property
    def is_chief(self) -> bool:
        return self.worker_index == self.chief_index

    @property
    def num_replicas(self) -> int:
        return len(self.devices) * self.num_workers

    def models(self, model) -> list:
        """One model per local replica: `model` itself on the first, a copy
        of its weights on each other accelerator (an XLA program reads the
        weights on its own device; it cannot reach another device's).

        CPU replicas (logical devices of one host) share the host's memory
        and cores: they all use `model` and its compiled programs, each in
        its own thread, so no copy and no second compilation is made."""
        import tensorflow as tf

        if id(model) not in self._copies:
            copies = [model]
            for device in self.devices[1:]:
                if _on_cpu(device):
                    copies.append(model)
                    continue
                with tf.device(device):
                    copies.append(copy_of(model))
            self._copies[id(model)] = copies
        return self._copies[id(model)]

    def map(self, count: int, work: Callable[[int, int], np.ndarray]
            ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield `(i, work(i, slot))` for i in range(count), in order, on
        every worker. `work` runs on local replica `slot`'s device (use
        `models(model)[slot]`) and returns a 2-D array."""
        mine = range(self.worker_index, count, self.num_workers)
        local = _run_on_devices(self.devices, mine, work)
        if self.num_workers == 1:
            yield from local
            return
        try:
            for first in range(0, count, self.num_workers):
                own = next(local)[1] if first + self.worker_index < count else None
                for offset, result in enumerate(self._swap(own)):
                    if first + offset < count:
                        yield first + offset, result
        finally:
            local.close()

    def broadcast_from_chief(self, values) -> np.ndarray:
        """The chief's float64 `values` on every worker (the others pass
        values of the same shape, which are ignored)."""
        values = np.asarray(values, np.float64)
        if self.num_workers == 1:
            return values
        slots = np.zeros((self.num_workers,) + values.shape)
        slots[self.worker_index] = values
        return self._sum(slots)[self.chief_index]

    def _swap(self, own: np.ndarray | None) -> list[np.ndarray]:
        """Every worker's array of this round (two all-reduces: the shapes,
        then the values padded to the largest)."""
        shape = np.zeros(2) if own is None else np.asarray(own.shape, np.float64)
        shapes = self._gather(shape).astype(np.int64)
        # Powers of two: few distinct shapes, so the collective is built
        # for few shapes in a run.
        rows, cols = (1 << int(n - 1).bit_length() if n > 0 else 1 for n in shapes.max(axis=0))
        padded = np.zeros((rows, cols))
        if own is not None:
            padded[:own.shape[0], :own.shape[1]] = own
        values = self._gather(padded)
        return [values[w, :r, :c] for w, (r, c) in enumerate(shapes)]

    def _gather(self, array: np.ndarray) -> np.ndarray:
        slots = np.zeros((self.num_workers,) + array.shape)
        slots[self.worker_index] = array
        return self._sum(slots)

    def _sum(self, array: np.ndarray) -> np.ndarray:
        """All-reduce (sum) over the workers: this worker's first replica
        holds `array`, its other replicas zeros."""
        import tensorflow as tf

        value = tf.constant(array, tf.float64)
        calls = iter(range(len(self.devices)))
        per_replica = self.strategy.experimental_distribute_values_from_function(
            lambda _: value if next(calls) == 0 else tf.zeros_like(value))
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None).numpy()


def copy_of(model):
    """A model of the same config, dtype policy and weights (int8 ones too,
    after `quantize`), built on the current device."""
    copy = type(model)(model.config, initialize=False, dtype=model.dtype_policy)
    if model.weight_quantization:  # the same int8 variables, filled below
        copy.quantize(model.weight_quantization)
    copy.set_weights(model.get_weights())
    return copy


def _local_devices(strategy) -> list[str | None]:
    if strategy is None:
        return [None]  # TensorFlow's own placement
    return list(strategy.extended.worker_devices)


def _on_cpu(device: str | None) -> bool:
    import tensorflow as tf

    return device is None or tf.DeviceSpec.from_string(device).device_type == "CPU"


def _cluster_position(strategy) -> tuple[int, int, int]:
    """(this worker's index, the number of workers, the chief's index), with
    workers ordered chief first, then `worker` tasks by index."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if resolver is None or not task_type:
        return 0, 1, 0
    spec = resolver.cluster_spec().as_dict()
    tasks = [(kind, i) for kind in ("chief", "worker") for i in range(len(spec.get(kind, [])))]
    if len(tasks) < 2:
        return 0, 1, 0
    return tasks.index((task_type, resolver.task_id)), len(tasks), 0


def _run_on_devices(devices, indices, work) -> Iterator[tuple[int, np.ndarray]]:
    """`work(i)` for each of `indices`, one thread per device pulling the
    next index; yields in the order of `indices`. A failure in any thread is
    raised here; closing the iterator stops the threads after their batch."""
    import tensorflow as tf

    indices = list(indices)
    lock = threading.Condition()
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []
    state = dict(next=0, taken=0, stop=False)
    limit = AHEAD * len(devices)
    context = contextvars.copy_context()

    def replica(slot, device):
        while True:
            with lock:
                lock.wait_for(lambda: state["stop"] or errors
                              or state["next"] - state["taken"] < limit)
                if state["stop"] or errors or state["next"] >= len(indices):
                    return
                position = state["next"]
                state["next"] += 1
            try:
                # CPU replicas run where their shared model is (see `models`).
                with contextlib.nullcontext() if _on_cpu(device) else tf.device(device):
                    result = context.copy().run(work, indices[position], slot)
            except BaseException as err:  # noqa: BLE001 -- re-raised by the consumer
                with lock:
                    errors.append(err)
                    lock.notify_all()
                return
            with lock:
                results[position] = np.asarray(result)
                lock.notify_all()

    threads = [threading.Thread(target=replica, args=(slot, d), daemon=True,
                                name=f"replica-{slot}") for slot, d in enumerate(devices)]
    for thread in threads:
        thread.start()
    try:
        for position, index in enumerate(indices):
            with lock:
                lock.wait_for(lambda: position in results or errors)
                if errors:
                    raise errors[0]
                result = results.pop(position)
                state["taken"] = position + 1
                lock.notify_all()
            yield index, result
    finally:
        with lock:
            state["stop"] = True
            lock.notify_all()
        for thread in threads:
            thread.join()


# --- the replicas scoring runs on -------------------------------------------------------

_current: contextvars.ContextVar[Replicas | None] = contextvars.ContextVar("replicas",
                                                                          default=None)


def current() -> Replicas:
    """The replicas set by `using`, else this process's default device."""
    return _current.get() or Replicas()


@contextlib.contextmanager
def using(strategy):
    """Run the scoring inside the block on `strategy`'s replicas."""
    token = _current.set(strategy if isinstance(strategy, Replicas) else Replicas(strategy))
    try:
        yield
    finally:
        _current.reset(token)
