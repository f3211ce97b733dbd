"""The tutorial's online machine-learning workflow, rule by rule (its callables are left alone: they
train models and loop for ever; each try is ended by the test instead)."""

from pathlib import Path

import pytest

from aiflow import Workflow
from aiflow.testing import WorkflowTest, load_workflow_file

FLOW = Path(__file__).with_name("online_ml_workflow.py")


@pytest.fixture(scope="module")
def workflow() -> Workflow:
    [wf] = load_workflow_file(FLOW)  # once per module: the file imports scikit-learn
    return wf


def test_preprocessing_and_prediction_start_with_the_execution(workflow: Workflow) -> None:
    ex = WorkflowTest(workflow).start()
    assert ex.queued() == ["pre_processing", "predicting"]
    for task in ("training", "validating", "deploying"):
        ex.assert_not_started(task)


def test_data_prepared_trains_then_validates_and_model_validated_deploys(workflow: Workflow) -> None:
    wt = WorkflowTest(workflow)
    ex = wt.start().running("pre_processing").running("predicting")
    wt.send_event("data_prepared")  # what pre_processing sends every 30 s
    ex.assert_started("training", cause="rule 1 of training (START) on event 'data_prepared'")
    ex.succeed("training")
    ex.assert_started("validating", cause="on training try 1 SUCCESS")
    ex.succeed("validating")
    ex.assert_not_started("deploying")  # only a better model is announced
    wt.send_event("model_validated")
    ex.succeed("deploying")
    assert ex.started() == ["pre_processing", "predicting", "training", "validating", "deploying"]
    assert ex.status == "RUNNING"  # pre_processing and predicting never end


def test_it_retrains_on_each_new_batch_but_never_twice_at_once(workflow: Workflow) -> None:
    wt = WorkflowTest(workflow)
    ex = wt.start()
    wt.send_event("data_prepared")
    ex.running("training")
    wt.send_event("data_prepared")  # training still runs: this batch starts nothing
    ex.assert_started("training", times=1)
    ex.succeed("training").succeed("validating")
    wt.advance(30)
    wt.send_event("data_prepared")
    ex.assert_started("training", times=2)
    ex.succeed("training")
    ex.assert_started("validating", times=2)


def test_a_failed_training_waits_for_the_next_batch_and_validates_nothing(workflow: Workflow) -> None:
    wt = WorkflowTest(workflow)
    ex = wt.start()
    wt.send_event("data_prepared")
    ex.fail("training", "ValueError: bad data")
    assert ex.status == "RUNNING"  # its START rule can run it again
    ex.assert_not_started("validating")
    wt.send_event("data_prepared")
    ex.succeed("training")
    ex.assert_started("validating", times=1)


def test_a_failed_preprocessing_fails_the_execution_and_stops_prediction(workflow: Workflow) -> None:
    ex = WorkflowTest(workflow).start().running("predicting")
    ex.fail("pre_processing", "FileNotFoundError: dataset/mnist_train.npz")
    assert ex.status == "FAILED"
    assert ex.task_status("predicting") == "STOPPED"
