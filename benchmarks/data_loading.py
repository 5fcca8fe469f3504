"""Item 4: records/s of the training loaders, and the share of a training run spent waiting on data.

    python -m benchmarks.run data_loading [--device cuda] [--smoke] [--output_dir DIR]

A synthetic fine-grained set (`fgclip.data.synthetic`, stored at 448 px so decoding costs what photos
cost) is written as JSONL + images and packed into webdataset shards (`fgclip.data.shards`). Measured in
one process, i.e. per loader worker:
- the trainer's dataset + collator over the JSONL and over the shards (decode, resize, normalise, pick
  regions, tokenise the batch's texts);
- the dataset alone over the shards against webdataset's own streaming pipeline (`WebDataset` ->
  decode -> the same transform) on the same shards: the reference for the shard reader;
- a short training run (the trainer's loader with its default worker count feeding stage-1 and stage-2
  steps): the share of wall time spent waiting for the next batch, and how many workers the step rate
  needs at the measured per-worker rate.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from benchmarks.harness import Figure, Report, describe_device, paired_ratio, synchronize, time_interleaved
from benchmarks.settings import BenchSettings
from benchmarks.shapes import build_fgclip, get_shape
from benchmarks.steps import FGCLIPStep
from fgclip.data.collate import Collator
from fgclip.data.dataset import FineGrainedDataset
from fgclip.data.readers import open_sources
from fgclip.data.sampler import EpochBatchSampler
from fgclip.data.shards import write_shards
from fgclip.data.synthetic import generate
from fgclip.train.loop import default_num_workers
from fgclip.transforms import image_transform

NAME = "data_loading"
STORED_IMAGE_SIZE = 448


def _loader(dataset, batch_size: int, seed: int, stage2: bool) -> DataLoader:
    """The trainer's loader in one process (one worker's throughput)."""
    sampler = EpochBatchSampler(len(dataset), batch_size, seed)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=Collator(with_regions=stage2), num_workers=0)


def _drain(loader) -> int:
    return sum(batch.num_images for batch in loader)


def _webdataset_stream(shards: list[Path], image_size: int) -> int:
    """webdataset's own pipeline over the shards: stream, decode to PIL, the same transform."""
    import webdataset as wds

    transform = image_transform(image_size)
    pipeline = (
        wds.WebDataset([str(s) for s in shards], shardshuffle=False, empty_check=False)
        .decode("pil")
        .to_tuple("png", "json")
        .map_tuple(transform, lambda record: record)
    )
    return sum(1 for _ in pipeline)


def _dataset_only(dataset) -> int:
    for index in range(len(dataset)):
        dataset[index]
    return len(dataset)


def training_wait_share(
    dataset, stage: int, settings: BenchSettings, model, batch_size: int, steps: int, workers: int
) -> dict:
    """Run `steps` training steps fed by the trainer's dataset, collator and worker count; time spent
    waiting for batches vs stepping. Batches cycle over the dataset in one loader iteration, so worker
    start-up happens once, in the first (untimed) step, as in a long epoch."""
    size = len(dataset)
    cycling = [[(batch * batch_size + row) % size for row in range(batch_size)] for batch in range(steps + 1)]
    loader = DataLoader(
        dataset, batch_sampler=cycling, collate_fn=Collator(with_regions=stage == 2), num_workers=workers
    )
    step = None
    waiting = stepping = 0.0
    done = 0
    iterator = iter(loader)
    for _ in tqdm(range(steps + 1), desc=f"stage-{stage} run", disable=not settings.progress):
        started = time.perf_counter()
        batch = next(iterator).to(settings.torch_device)
        waited = time.perf_counter() - started
        if step is None:
            step = FGCLIPStep(model, batch, stage, settings)
        step.batch = batch
        started = time.perf_counter()
        step()
        synchronize(settings.torch_device)
        if done > 0:  # the first step (and the loader's start-up) is warm-up
            waiting, stepping = waiting + waited, stepping + time.perf_counter() - started
        done += 1
    del iterator
    return {
        "stage": stage,
        "steps": steps,
        "workers": workers,
        "batch_size": batch_size,
        "wait_s": waiting,
        "step_s": stepping,
        "wait_share": waiting / (waiting + stepping),
        "step_images_per_s": steps * batch_size / stepping,
    }


def _plan(settings: BenchSettings) -> dict:
    if settings.smoke:
        return {"images": 12, "stored": 64, "batch": 4, "steps": 1, "shard_size": 6}
    if settings.on_gpu:
        return {
            "images": 256,
            "stored": STORED_IMAGE_SIZE,
            "batch": settings.batch_or(8, 64),
            "steps": 12,
            "shard_size": 256,
        }
    return {"images": 192, "stored": STORED_IMAGE_SIZE, "batch": settings.batch_or(8, 64), "steps": 4, "shard_size": 64}


def run(settings: BenchSettings) -> Report:
    plan = _plan(settings)
    shape = get_shape(settings.shape_name())
    size = shape.image_size
    with tempfile.TemporaryDirectory(prefix="fgclip-data-bench-") as root:
        synthetic = generate(
            Path(root) / "data",
            plan["images"],
            settings.seed,
            plan["stored"],
            heldout_fraction=0.01,
            progress=settings.progress,
        )
        summary = write_shards([synthetic.all], Path(root) / "shards", plan["shard_size"], progress=False)
        shards = sorted((Path(root) / "shards").glob("shard-*.tar"))
        jsonl_set = FineGrainedDataset(open_sources([synthetic.all]), size, with_regions=True)
        shard_set = FineGrainedDataset(open_sources(shards), size, with_regions=True)
        batch = plan["batch"]
        candidates = {
            "jsonl_loader": lambda: _drain(_loader(jsonl_set, batch, settings.seed, True)),
            "shard_loader": lambda: _drain(_loader(shard_set, batch, settings.seed, True)),
            "shard_dataset_only": lambda: _dataset_only(shard_set),
            "webdataset_stream": lambda: _webdataset_stream(shards, size),
        }
        timings = time_interleaved(candidates, torch.device("cpu"), settings.warmup_or(1), settings.repeats_or(3))
        counts = {
            "jsonl_loader": len(jsonl_set) // batch * batch,
            "shard_loader": len(shard_set) // batch * batch,
            "shard_dataset_only": len(shard_set),
            "webdataset_stream": summary.written,
        }
        rate = {name: counts[name] / timing.median for name, timing in timings.items()}
        workers = default_num_workers(1)
        model = build_fgclip(shape, settings.seed).to(settings.torch_device)
        stage1_set = FineGrainedDataset(open_sources([synthetic.all]), size, with_regions=False)
        runs = [
            training_wait_share(dataset, stage, settings, model, batch, plan["steps"], workers)
            for stage, dataset in ((1, stage1_set), (2, jsonl_set))
        ]
    device_name = describe_device(settings.torch_device)["name"]
    cpu = describe_device(torch.device("cpu"))["cpu"]
    figures = [
        Figure(
            "shard reader / webdataset stream (records/s, decode + transform, one worker)",
            counts["shard_dataset_only"]
            / counts["webdataset_stream"]
            * paired_ratio(timings["webdataset_stream"], timings["shard_dataset_only"]),
            "x",
            (">=", 0.95),
            "indexed seek-and-read vs sequential streaming, same shards, same transform",
        ),
        Figure(
            "JSONL loader records/s per worker (decode + transform + regions + tokenise)",
            rate["jsonl_loader"],
            "records/s",
            None,
            f"{plan['stored']}-px PNG -> {size} px; {cpu}",
        ),
        Figure("shard loader records/s per worker", rate["shard_loader"], "records/s", None, cpu),
        Figure(
            "collate (tokenising the batch's texts) share of loader time",
            100 * (1 - rate["shard_loader"] / rate["shard_dataset_only"]),
            "%",
            None,
            "stage-2 records",
        ),
    ]
    for result in runs:
        stage = result["stage"]
        figures.append(
            Figure(
                f"stage-{stage} training run: share of wall time waiting on data",
                100 * result["wait_share"],
                "%",
                ("<=", 5.0),
                f"{result['workers']} workers (trainer default), batch {result['batch_size']}, {device_name}",
            )
        )
        figures.append(
            Figure(
                f"stage-{stage}: loader workers the step rate needs",
                result["step_images_per_s"] / rate["jsonl_loader"],
                "workers",
                None,
                f"step {result['step_images_per_s']:.1f} images/s / {rate['jsonl_loader']:.1f} records/s per worker",
            )
        )
    details = {
        "plan": plan,
        "timings": {name: t.as_dict() for name, t in timings.items()},
        "records_per_s": rate,
        "records": counts,
        "training_runs": runs,
        "shape": shape.name,
        "shards": len(shards),
    }
    return Report(NAME, figures, details, describe_device(settings.torch_device), settings.as_dict())


if __name__ == "__main__":
    from benchmarks.run import run_as_main

    run_as_main(NAME)
