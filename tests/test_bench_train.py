"""benchmarks/bench_train.py replays the reference loop's random draws in every route.

That replay is why its seed-1337 run can be set against the reference's published loss,
so the order of the draws and the routes' use of them are checked here.
"""

import os
import sys
from pathlib import Path

import pytest
import torch

POLICY_BEFORE_IMPORT = os.environ.get("OMP_WAIT_POLICY")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_train  # noqa: E402

from lslm.model import GPT  # noqa: E402
from lslm.train import TrainConfig, Trainer  # noqa: E402


def test_importing_the_benchmark_leaves_the_thread_policy_alone():
    # Only running the script sets OMP_WAIT_POLICY: spinning threads in the notebook
    # kernels that this test run starts later would slow them down on a small machine.
    assert os.environ.get("OMP_WAIT_POLICY") == POLICY_BEFORE_IMPORT


@pytest.mark.parametrize("n", [7, 10, 11, 12_345, 1_115_394])
def test_reference_split_cuts_where_the_reference_does(n):
    splits = bench_train.reference_split("x" * n)
    assert len(splits.train) == int(n * 0.9)
    assert len(splits.train) + len(splits.val) == n and splits.test == ""


def draws_for(data, config, **kw):
    args = dict(seed=7, model_config=config, data=data, batch_size=4, iters=12, eval_every=5, eval_iters=2)
    return bench_train.ReferenceDraws(**{**args, **kw})


def test_draws_come_in_the_reference_order(char_data, tiny_config):
    tok, data = char_data
    config = tiny_config(tok.vocab_size)
    draws = draws_for(data, config)
    assert len(draws.train) == 12 and sorted(draws.evals) == [0, 5, 10, 12]
    assert all(len(draws.evals[s][split]) == 2 for s in draws.evals for split in ("train", "val"))

    # One generator: the initial weights, then the first training batch, fetched before the
    # evaluation at step 0, whose training batches come before its validation batches.
    torch.manual_seed(7)
    model = GPT(config)
    high = {split: len(data[split]) - config.block_size for split in ("train", "val")}
    first = torch.randint(high["train"], (4,))
    eval_train = [torch.randint(high["train"], (4,)) for _ in range(2)]
    eval_val = [torch.randint(high["val"], (4,)) for _ in range(2)]
    second = torch.randint(high["train"], (4,))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), draws.initial_state.values()))
    assert torch.equal(draws.train[0], first) and torch.equal(draws.train[1], second)
    assert all(torch.equal(a, b) for a, b in zip(draws.evals[0]["train"], eval_train))
    assert all(torch.equal(a, b) for a, b in zip(draws.evals[0]["val"], eval_val))


def test_trainer_route_and_reference_route_train_alike_on_the_replayed_batches(char_data, tiny_config):
    tok, data = char_data
    config = tiny_config(tok.vocab_size)
    draws = draws_for(data, config)
    cfg = TrainConfig(max_iters=12, lr_decay_iters=12, warmup_iters=2, batch_size=4, eval_interval=0,
                      progress=False, device="cpu", seed=7)

    def fresh_model() -> GPT:
        model = GPT(config)
        model.load_state_dict(draws.initial_state)
        return model

    loop = bench_train.ReferenceLoop(fresh_model(), data, cfg, draws)
    reference = [loop.train_step() for _ in range(12)]
    replay = bench_train.ReplayTrainer(fresh_model(), tok, data, cfg, draws=draws).fit()["train_loss"]
    own = Trainer(fresh_model(), tok, data, cfg).fit()["train_loss"]  # its own batches

    assert replay == pytest.approx(reference, rel=1e-5)
    assert own[0] != pytest.approx(reference[0], rel=1e-3)  # so the replay really was used
