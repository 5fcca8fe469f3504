"""The local engine: one worker per GPU for model steps (or N CPU processes), over the shard files.

One worker runs in this process (no start-up cost, easiest to debug); more run as spawned processes,
each holding its own model on its own device and taking the next pending shard when it finishes one.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

import torch
from tqdm import tqdm

from fgclip.errors import UserError
from fgclip.pipeline.steps import ShardResult, ShardWorker, StepRun, uses_model

_worker: ShardWorker | None = None  # the worker of a spawned process


def plan_devices(run: StepRun) -> list[str]:
    """One device per worker: every visible GPU for a model step on GPU, else CPU processes."""
    settings = run.config.run
    on_gpu = uses_model(run.config, run.step) and settings.device in ("auto", "cuda") and torch.cuda.is_available()
    if on_gpu and settings.spread_model:
        return ["cuda"]  # one worker; the model is spread over every GPU
    if on_gpu:
        gpus = [f"cuda:{index}" for index in range(torch.cuda.device_count())]
        workers = settings.workers or len(gpus)
        return [gpus[index % len(gpus)] for index in range(workers)]
    device = settings.device if settings.device not in ("auto", "cuda") else "cpu"
    return [device] * max(1, settings.workers)


def _init_worker(run: StepRun, devices, threads: int) -> None:
    global _worker
    torch.set_num_threads(threads)  # CPU workers share the cores instead of each taking all of them
    _worker = ShardWorker(run, devices.get())


def _process(index: int) -> ShardResult:
    return _worker.process(index)


def run_local(run: StepRun, pending: list[int]) -> list[ShardResult]:
    """Process the pending shards of one step; returns one result per shard attempted."""
    devices = plan_devices(run)
    bar = tqdm(total=len(pending), desc=run.step, unit="shard", dynamic_ncols=True)
    results: list[ShardResult] = []
    if len(devices) == 1 or len(pending) <= 1:
        worker = ShardWorker(run, devices[0])
        for index in pending:
            results.append(worker.process(index))
            bar.update(1)
        bar.close()
        return results
    context = mp.get_context("spawn")  # CUDA and many threaded libraries are not fork-safe
    queue = context.Queue()
    for device in devices:
        queue.put(device)
    threads = max(1, (os.cpu_count() or 1) // len(devices))
    with ProcessPoolExecutor(
        len(devices), mp_context=context, initializer=_init_worker, initargs=(run, queue, threads)
    ) as pool:
        futures = {pool.submit(_process, index): index for index in pending}
        try:
            for future in as_completed(futures):
                results.append(future.result())
                bar.update(1)
        except UserError:
            pool.shutdown(cancel_futures=True)  # a user error hits every shard alike: stop at the first
            raise
        except BrokenProcessPool:
            finished = {result.index for result in results}
            results += [
                ShardResult(index, error="a worker process died (killed or out of memory)")
                for index in pending
                if index not in finished
            ]
    bar.close()
    return results
