"""Timing runners interleaved: every runner of a task is warmed up, then timed once per
round in an order rotated each round, so that drifts in machine load hit all alike."""
import gc
import time
from dataclasses import dataclass, field
from typing import Callable, List

import torch


@dataclass
class Runner:
    name: str
    backend: str
    run: Callable[[], object]
    times: List[float] = field(default_factory=list)


def torch_runner(name, backend, module, x) -> Runner:
    """A runner calling a PyTorch module on ``x`` under ``torch.inference_mode``."""
    def run():
        with torch.inference_mode():
            return module(x)
    return Runner(name, backend, run)


def backend_runner(name, backend, session, array) -> Runner:
    """A runner calling an opened backend (:mod:`mobilenet_tasks.backends`) on
    ``array``."""
    feed = {session.input_names[0]: array}
    return Runner(name, backend, lambda: session.run(feed))


def time_runners(runners: List[Runner], warmup: int, repeats: int) -> None:
    """Warm every runner up, then time each once per round, rotating the order."""
    for _ in range(warmup):
        for runner in runners:
            runner.run()
    gc.collect()
    gc.disable()
    try:
        for r in range(repeats):
            k = r % len(runners)
            for runner in runners[k:] + runners[:k]:
                start = time.perf_counter()
                runner.run()
                runner.times.append(time.perf_counter() - start)
    finally:
        gc.enable()
