"""The optimisation plan: values and their sources, a batch cut to the data, a recipe warm-up capped."""

from fgclip.train.cli import build_parser, config_from_args
from fgclip.train.plan import format_plan, make_plan


def plan_for(*argv, num_samples=1500, world_size=2):
    config = config_from_args(build_parser().parse_args(["--data", "d.jsonl", *argv]))
    return make_plan(config, num_samples, world_size)


def test_the_issue_case_gets_a_recipe_that_trains(tiny_init):
    """Stage 2 from a tiny stage 1's final/ on 1,500 images, 2 processes, 10 epochs: the tiny recipe."""
    _, plan = plan_for("--stage", "2", "--init", str(tiny_init), "--epochs", "10")
    assert (plan.values["lr"], plan.values["batch_size"], plan.values["warmup_steps"]) == (1e-3, 32, 20)
    assert plan.total_steps == 10 * (1500 // 2 // 32) == 230 and plan.values["global_batch"] == 64
    assert plan.notes == []
    assert plan.sources["lr"] == "recipe tiny" and plan.sources["epochs"] == "--epochs"


def test_a_recipe_warmup_near_the_run_length_is_shortened_and_a_large_batch_cut(tmp_path, tiny_init):
    published = tmp_path / "published"
    published.mkdir()
    for item in tiny_init.iterdir():
        (published / item.name).write_bytes(item.read_bytes())
    (published / "training_recipe.json").write_text('{"recipe": "published", "stage": 1}')
    config, plan = plan_for("--stage", "2", "--init", str(published), "--epochs", "10", num_samples=1500)
    assert plan.values["batch_size"] == 512 and plan.total_steps == 10  # 1 step per epoch
    assert plan.values["warmup_steps"] == config.optim.warmup_steps == 1
    assert plan.notes == [
        (
            "warm-up: 200 steps (recipe published) is not well below the run's 10 steps; "
            "shortened to 1 (10% of the steps)"
        )
    ]
    _, small = plan_for("--stage", "2", "--init", str(published), "--max_steps", "50", num_samples=600)
    assert small.values["batch_size"] == 300  # 512 x 2 processes > 600 records
    assert small.notes[0] == (
        "batch: 512 per device x 2 process(es) is more than the 600 records; cut to 300 per device"
    )
    assert small.values["warmup_steps"] == 5


def test_a_warmup_the_user_chose_is_kept_with_a_warning(tiny_init):
    _, plan = plan_for("--init", "tiny", "--max_steps", "10", "--warmup_steps", "30")
    assert plan.values["warmup_steps"] == 30
    assert plan.notes == [
        (
            "warning: the warm-up (30 steps, --warmup_steps) is not shorter than the run's 10 steps: "
            "the learning rate never reaches its peak 0.001"
        )
    ]


def test_the_start_up_block_names_every_value_and_its_source(tiny_init):
    _, plan = plan_for("--init", "tiny", "--max_steps", "100", "--lr", "3e-4", "--grad_accum", "2")
    block = format_plan(plan, "optimisation:")
    for label, source in [
        ("lr (peak)", "--lr"),
        ("weight decay", "recipe tiny"),
        ("warm-up steps", "recipe tiny"),
        ("batch per device", "recipe tiny"),
        ("global batch", "32 per device x 2 process(es) x 2"),
        ("grad accumulation", "--grad_accum"),
        ("epochs", "not used: --max_steps"),
        ("total steps", "--max_steps"),
    ]:
        line = next(line for line in block.splitlines() if line.strip().startswith(label))
        assert source in line, line
    assert plan.to_json()["values"]["lr"] == {"value": 3e-4, "source": "--lr"}
