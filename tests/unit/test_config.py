import pytest

from fedforge.config import Config, load_config, merge, parse_overrides
from fedforge.errors import ConfigError


def test_defaults_match_documented_names():
    cfg = Config()
    assert cfg.seed == 0
    assert cfg.data.name == "digits" and cfg.data.num_clients == 10
    assert cfg.data.partition.kind == "dirichlet"
    assert cfg.data.partition.params.model_dump() == {"alpha": 0.5, "min_samples": 10}
    assert cfg.model.name == "cnn" and cfg.algorithm.name == "fedavg"
    assert cfg.train.rounds == 20 and cfg.train.clients_per_round == 10 and cfg.train.local_epochs == 2
    assert cfg.backend.kind == "sequential" and cfg.tracking.runs_dir == "runs"


def test_yaml_and_dotted_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train: {rounds: 7}\nalgorithm: {name: fedprox, mu: 0.1}\n")
    cfg = load_config(path, ["train.rounds=5", "algorithm.mu=0.5", "data.partition.alpha=2", "train.lr=1e-3"])
    assert cfg.train.rounds == 5
    assert cfg.algorithm.params.mu == 0.5
    assert cfg.data.partition.params.alpha == 2.0
    assert cfg.train.lr == pytest.approx(1e-3)


def test_resolved_config_includes_plugin_defaults():
    d = load_config(None, ["algorithm.name=fedprox", "data.partition.kind=shards"]).to_dict()
    assert d["algorithm"] == {"name": "fedprox", "mu": 0.01}
    assert d["data"]["partition"] == {"kind": "shards", "classes_per_client": 2}
    assert Config.model_validate(d).to_dict() == d  # round-trips


def test_parse_overrides_types():
    tree = parse_overrides(["a.b=3", "a.c=true", "d=hello", "e=[1, 2]", "f=null"])
    assert tree == {"a": {"b": 3, "c": True}, "d": "hello", "e": [1, 2], "f": None}
    with pytest.raises(ConfigError, match="key.sub=value"):
        parse_overrides(["rounds"])
    with pytest.raises(ConfigError, match="is a value, not a section"):
        parse_overrides(["a=1", "a.b=2"])


def test_merge_accepts_nested_and_dotted_keys():
    base = {"train": {"rounds": 3, "lr": 0.1}}
    assert merge(base, {"train.rounds": 5}) == {"train": {"rounds": 5, "lr": 0.1}}
    assert merge(base, {"train": {"lr": 0.2}}) == {"train": {"rounds": 3, "lr": 0.2}}
    assert base == {"train": {"rounds": 3, "lr": 0.1}}  # not mutated


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (["trian.rounds=3"], ["trian", "did you mean 'train'"]),
        (["data.partiton.alpha=1"], ["data.partiton", "did you mean 'partition'"]),
        (["data.partition.alpah=1"], ["data.partition.alpah", "did you mean 'alpha'"]),
        (["algorithm.name=fedprox", "algorithm.muu=1"], ["algorithm.muu", "did you mean 'mu'"]),
        (["train.rounds=abc"], ["train.rounds", "valid integer", "'abc'"]),
        (["data.partition.alpha=0"], ["data.partition.alpha", "greater than 0"]),
        (["data.partition.alpha=-1"], ["data.partition.alpha", "greater than 0"]),
        (["train.clients_per_round=11"], ["train.clients_per_round", "exceeds data.num_clients=10"]),
        (["data.name=cifar11"], ["data.name", "unknown dataset 'cifar11'", "did you mean 'cifar10'", "digits"]),
        (["model.name=resnet50"], ["model.name", "unknown model", "resnet18", "mlp"]),
        (["algorithm.name=fedprx"], ["algorithm.name", "did you mean 'fedprox'", "known algorithms:", "fedbn"]),
        (["data.partition.kind=zipf"], ["data.partition.kind", "unknown partition", "dirichlet"]),
        (["backend.kind=gpu"], ["backend.kind", "unknown backend", "sequential"]),
        (["backend.device=tpu"], ["backend.device", "unknown device"]),
        (["train.optimizer=lbfgs"], ["train.optimizer", "sgd"]),
    ],
)
def test_bad_config_names_the_field(overrides, fragments):
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {rounds: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(scalar)


def test_clients_per_round_defaults_to_all_clients():
    assert load_config(None, ["data.num_clients=4"]).train.clients_per_round == 4


def test_shipped_configs_are_valid():
    from pathlib import Path

    configs = sorted(Path(__file__).resolve().parents[2].glob("configs/*.yaml"))
    assert {p.name for p in configs} >= {
        "digits_fedavg.yaml",
        "digits_fedprox.yaml",
        "digits_fedbn.yaml",
        "cifar10_fedavg.yaml",
    }
    for path in configs:
        load_config(path)
    cifar = load_config(configs[0].parent / "cifar10_fedavg.yaml")
    assert cifar.model.name == "resnet18" and cifar.data.num_clients == 100
    assert cifar.train.clients_per_round == 10 and cifar.data.partition.params.alpha == 0.5


def test_switching_a_plugin_drops_the_old_plugins_parameters(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: {partition: {kind: dirichlet, alpha: 0.1}}\nalgorithm: {name: fedprox, mu: 0.5}\n")
    cfg = load_config(path, ["data.partition.kind=iid", "algorithm.name=fedavg"])
    assert cfg.data.partition.kind == "iid" and cfg.algorithm.name == "fedavg"
    same = load_config(path, ["data.partition.kind=dirichlet", "algorithm.mu=0.2"])
    assert same.data.partition.params.alpha == 0.1 and same.algorithm.params.mu == 0.2
    switched = load_config(path, ["algorithm.name=fedbn", "algorithm.norm_types=[batch, group]"])
    assert switched.algorithm.params.norm_types == ["batch", "group"]


def test_the_annotated_yaml_of_a_mapping_valued_parameter_loads_back_to_the_same_config(tmp_path):
    import yaml

    from fedforge.config import annotated_yaml, build_config

    cfg = build_config({"algorithm": {"name": "heterofl", "capacities": {1: 0.5, 0.25: 0.5}}})
    text = annotated_yaml(cfg)
    assert "capacities: {'0.25': 0.5, '1.0': 0.5}  #" in text
    again = build_config(yaml.safe_load(text))
    assert again.algorithm.params.capacities == {1.0: 0.5, 0.25: 0.5} and again.to_dict() == cfg.to_dict()
