"""Robustness probes of the model registry (found by an adversarial pass): an argument a
builder does not take is refused by ``create`` naming it and the builder's arguments, as a
``ValueError`` (leansnn's user errors; one line in the CLI) that is still a ``TypeError``."""

import pytest

import leansnn as ls
from leansnn.cli import main


@pytest.mark.parametrize("name", ls.models.available())
def test_unknown_argument_names_it_and_the_arguments(name):
    import inspect

    params = inspect.signature(ls.models.registry.builder(name)).parameters
    with pytest.raises(ValueError, match=r"takes no argument\(s\) bogus_arg; its arguments: ") \
            as info:
        ls.models.create(name, bogus_arg=1)
    assert isinstance(info.value, TypeError)
    for p in params:
        assert p in str(info.value)


def test_train_snn_option_the_model_does_not_take(tiny_idx, capsys):
    assert main(["train-snn", "--model", "lif_cnn", "--data", "fashion_mnist", "--root",
                 str(tiny_idx), "--dropout", "0.2", "--T", "2", "--width", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "'lif_cnn' takes no argument(s) dropout" in err and "width" in err
    assert err.count("\n") == 1
