"""`--engine ray`: the same steps on Ray Data, for runs past one machine.

The pending shard indices become a Ray dataset; `map_batches` sends them to a pool of actors, each
holding one copy of the step's model (one GPU per actor for model steps). Actors read and write the
same shard files as the local engine, so the output folder must be on storage every node sees, and a
run may switch engines between re-runs. Ray is an optional install: `pip install 'fgclip[ray]'`.
"""

from __future__ import annotations

from tqdm import tqdm

from fgclip.errors import UserError
from fgclip.pipeline.steps import ShardResult, ShardWorker, StepRun, uses_model


class _ShardActor:
    """A Ray Data callable class: built once per actor, then called with batches of shard indices.

    A user error (`UserError`, e.g. a missing model option) is returned as data rather than raised,
    so the driver can report it in one line instead of a chain of Ray exceptions.
    """

    def __init__(self, run: StepRun, device: str):
        self.worker, self.fatal = None, ""
        try:
            self.worker = ShardWorker(run, device)
        except UserError as error:
            self.fatal = str(error)

    def __call__(self, batch: dict) -> dict:
        indices, records, errors, fatal = [], [], [], []
        for index in batch["shard"]:
            result, problem = ShardResult(int(index)), self.fatal
            if not problem:
                try:
                    result = self.worker.process(int(index))
                except UserError as error:
                    problem = str(error)
            indices.append(result.index)
            records.append(result.records)
            errors.append(result.error or "")
            fatal.append(problem)
        return {"shard": indices, "records": records, "error": errors, "fatal": fatal}


def run_ray(run: StepRun, pending: list[int]) -> list[ShardResult]:
    try:
        import ray
        import ray.data
    except ImportError as error:
        raise UserError("--engine ray needs Ray Data: pip install 'fgclip[ray]'") from error
    settings = run.config.run
    if not ray.is_initialized():
        if settings.ray_address:
            ray.init(address=settings.ray_address)
        else:  # a local Ray instance on this machine
            ray.init(num_cpus=settings.workers or None, include_dashboard=False)
    gpu_step = (
        uses_model(run.config, run.step) and settings.device != "cpu" and ray.cluster_resources().get("GPU", 0) > 0
    )
    if gpu_step:
        actors = settings.workers or int(ray.cluster_resources()["GPU"])
    else:
        actors = settings.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    actors = max(1, min(actors, len(pending)))
    dataset = ray.data.from_items([{"shard": index} for index in pending], override_num_blocks=len(pending))
    results = dataset.map_batches(
        _ShardActor,
        fn_constructor_kwargs={"run": run, "device": "cuda" if gpu_step else "cpu"},
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_gpus=1 if gpu_step else 0,
        num_cpus=1,
    )
    out: list[ShardResult] = []
    with tqdm(total=len(pending), desc=f"{run.step} (ray)", unit="shard", dynamic_ncols=True) as bar:
        for row in results.iter_rows():
            if row["fatal"]:
                raise UserError(row["fatal"])
            out.append(ShardResult(int(row["shard"]), int(row["records"]), row["error"] or None))
            bar.update(1)
    return out
