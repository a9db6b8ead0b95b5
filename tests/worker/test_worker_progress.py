"""ProgressEstimator: ComfyUI events folded into a rising, throttled JobProgress."""

from __future__ import annotations

from comfyfarm.comfy.events import Executing, ExecutionCached, Progress
from comfyfarm.tasks.models import JobSpec, new_job_id
from comfyfarm.worker.progress import ProgressEstimator

PROMPT = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "m.safetensors"}},
    "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["1", 1]}},
    "3": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "positive": ["2", 0]}},
    "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0]}},
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def estimator(clock: FakeClock, min_interval: float = 0.25) -> ProgressEstimator:
    spec = JobSpec(job_id=new_job_id(), prompt=PROMPT)
    return ProgressEstimator(spec, worker="w0", min_interval=min_interval, clock=clock)


def test_percent_counts_done_nodes_plus_the_running_nodes_fraction() -> None:
    """Two of four nodes done and the sampler half way is 62.5 %."""
    clock = FakeClock()
    est = estimator(clock, min_interval=0)
    pid = "p"
    est.feed(ExecutionCached(prompt_id=pid, nodes=("1", "2")))
    est.feed(Executing(prompt_id=pid, node="3"))
    progress = est.feed(Progress(prompt_id=pid, node="3", value=10, max=20))
    assert progress is not None
    assert progress.percent == 62.5 and progress.node_type == "KSampler"
    assert progress.nodes_done == 2 and progress.nodes_total == 4


def test_percent_never_goes_down() -> None:
    """A node that restarts its own counter (a second sampler pass) does not move the bar back."""
    clock = FakeClock()
    est = estimator(clock, min_interval=0)
    pid = "p"
    percents = []
    events = [
        Executing(prompt_id=pid, node="1"),
        Executing(prompt_id=pid, node="3"),
        Progress(prompt_id=pid, node="3", value=18, max=20),
        Progress(prompt_id=pid, node="3", value=2, max=20),  # second pass
        Progress(prompt_id=pid, node="3", value=30, max=20),  # a bogus overshoot
        Executing(prompt_id=pid, node="4"),
    ]
    for event in events:
        clock.now += 1
        progress = est.feed(event)
        assert progress is not None
        percents.append(progress.percent)
    percents.append(est.phase("collecting").percent)
    assert percents == sorted(percents)
    assert percents[-1] == 100.0 and max(percents[:-1]) <= 75.0


def test_step_updates_are_throttled_but_node_changes_always_go_out() -> None:
    """Within ``min_interval`` step updates are dropped; a new node is reported at once."""
    clock = FakeClock()
    est = estimator(clock, min_interval=1.0)
    pid = "p"
    assert est.feed(Executing(prompt_id=pid, node="3")) is not None
    clock.now += 0.1
    assert est.feed(Progress(prompt_id=pid, node="3", value=1, max=20)) is None
    clock.now += 0.5
    assert est.feed(Progress(prompt_id=pid, node="3", value=2, max=20)) is None
    clock.now += 0.5
    sent = est.feed(Progress(prompt_id=pid, node="3", value=3, max=20))
    assert sent is not None and sent.value == 3
    clock.now += 0.1
    assert est.feed(Executing(prompt_id=pid, node="4")) is not None


def test_progress_of_another_node_is_ignored() -> None:
    """A step counter from a node other than the running one does not count as its progress."""
    clock = FakeClock()
    est = estimator(clock, min_interval=0)
    pid = "p"
    est.feed(Executing(prompt_id=pid, node="3"))
    assert est.feed(Progress(prompt_id=pid, node="99", value=19, max=20)) is None
    progress = est.feed(Progress(prompt_id=pid, node="3", value=1, max=20))
    assert progress is not None and progress.value == 1


def test_phases_are_reported_and_collecting_is_complete() -> None:
    """A phase change always produces a record; ``collecting`` means every node is done."""
    clock = FakeClock()
    est = estimator(clock, min_interval=60)
    assert est.phase("uploading").phase == "uploading"
    assert est.phase("submitted").percent == 0.0
    final = est.phase("collecting")
    assert final.percent == 100.0 and final.nodes_done == 4 and final.node is None


def test_unrelated_events_produce_nothing() -> None:
    """Events that say nothing about progress return None."""
    est = estimator(FakeClock())
    assert est.feed(object()) is None
