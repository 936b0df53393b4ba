"""Profiles: the schema, extends, precedence and the errors a user sees."""

from __future__ import annotations

from pathlib import Path

import pytest

from infer_cli.config import loader, writer
from infer_cli.config.schema import parse_size
from infer_cli.errors import ProfileError, ProfileNotFoundError, SettingError

BUNDLED = [
    "a100-80gb",
    "cpu",
    "cpu-2x",
    "h100",
    "h100x8",
    "h100x8-dp",
    "h200",
    "l40s",
    "multinode",
    "sim",
]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_every_bundled_profile_loads() -> None:
    names = [s.name for s in loader.available() if s.bundled]
    assert sorted(names) == BUNDLED
    for name in names:
        loaded = loader.load(name, environ={})
        assert loaded.profile.model.source
        assert loaded.profile.description


def test_cpu_profile_is_the_embedded_default_shape() -> None:
    profile = loader.load("cpu", environ={}).profile
    assert profile.engine.device == "cpu"
    assert profile.engine.enforce_eager
    assert profile.engine.kv_cache_memory_bytes == 2**30
    assert profile.lmcache.mode == "mp"
    assert profile.model.source == "infer:smollm2-135m-instruct"


def test_extends_merges_tables_key_by_key(infer_home: Path) -> None:
    path = write(
        infer_home / "profiles" / "mine.toml",
        'extends = "h100"\n[engine]\nmax_num_seqs = 64\n'
        '[openrouter.pricing]\nprompt = "0.000001"\n',
    )
    loaded = loader.load("mine", environ={})
    assert [s.name for s in loaded.chain] == ["h100", "mine"]
    assert loaded.profile.engine.max_num_seqs == 64
    assert loaded.profile.engine.gpu_memory_utilization == 0.92  # inherited
    assert loaded.profile.openrouter.pricing.prompt == "0.000001"
    assert loaded.profile.openrouter.pricing.completion == "0.00000005"  # inherited
    assert loaded.profile.extends == "h100"
    assert loaded.origins["engine.max_num_seqs"] == str(path)


def test_user_profile_named_like_a_bundled_one_can_extend_it(infer_home: Path) -> None:
    write(infer_home / "profiles" / "h100.toml", 'extends = "h100"\n[proxy]\nport = 9000\n')
    loaded = loader.load("h100", environ={})
    assert loaded.profile.proxy.port == 9000
    assert loaded.chain[0].bundled and not loaded.chain[1].bundled


def test_precedence_file_then_env_then_set(infer_home: Path) -> None:
    write(infer_home / "profiles" / "p.toml", 'extends = "cpu"\n[engine]\nmax_num_seqs = 4\n')
    env = {"INFER_ENGINE__MAX_NUM_SEQS": "8", "INFER_PROXY__PORT": "9100"}
    loaded = loader.load("p", environ=env)
    assert loaded.profile.engine.max_num_seqs == 8
    assert loaded.profile.proxy.port == 9100
    loaded = loader.load("p", environ=env, overrides=["engine.max_num_seqs=16"])
    assert loaded.profile.engine.max_num_seqs == 16
    assert loaded.origins["engine.max_num_seqs"] == "--set engine.max_num_seqs=16"


def test_set_values_are_toml_literals() -> None:
    loaded = loader.load(
        "cpu",
        environ={},
        overrides=[
            "engine.enforce_eager=false",
            "engine.extra_args=['--seed', '1']",
            "engine.gpu_memory_utilization=0.5",
            "openrouter.name=Plain text",
        ],
    )
    assert loaded.profile.engine.enforce_eager is False
    assert loaded.profile.engine.extra_args == ["--seed", "1"]
    assert loaded.profile.engine.gpu_memory_utilization == 0.5
    assert loaded.profile.openrouter.name == "Plain text"


def test_unknown_key_names_key_file_and_suggestion(infer_home: Path) -> None:
    path = write(
        infer_home / "profiles" / "typo.toml", 'extends = "cpu"\n[engine]\nmax_num_seq = 4\n'
    )
    with pytest.raises(ProfileError) as caught:
        loader.load("typo", environ={})
    line = caught.value.one_line()
    assert "engine.max_num_seq" in line
    assert str(path) in line
    assert "max_num_seqs" in line  # the suggestion
    assert "\n" not in line


def test_wrong_type_names_key_origin_and_value() -> None:
    with pytest.raises(ProfileError) as caught:
        loader.load("cpu", environ={"INFER_ENGINE__MAX_NUM_SEQS": "lots"})
    line = caught.value.one_line()
    assert "engine.max_num_seqs" in line
    assert "INFER_ENGINE__MAX_NUM_SEQS" in line
    assert "lots" in line


def test_unknown_section_lists_allowed_tables() -> None:
    with pytest.raises(ProfileError) as caught:
        loader.load("cpu", environ={}, overrides=["engin.max_num_seqs=3"])
    assert "allowed in the top level" in caught.value.one_line()
    assert "engine" in caught.value.one_line()


def test_bad_set_syntax() -> None:
    with pytest.raises(SettingError):
        loader.load("cpu", environ={}, overrides=["max_num_seqs"])


def test_unknown_profile_suggests_a_close_name() -> None:
    with pytest.raises(ProfileNotFoundError) as caught:
        loader.load("h10", environ={})
    assert "did you mean" in caught.value.one_line()


def test_malformed_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.toml", "[model\nsource = 1\n")
    with pytest.raises(ProfileError) as caught:
        loader.load(str(path), environ={})
    assert str(path) in caught.value.one_line()
    assert "not valid TOML" in caught.value.one_line()


def test_missing_file() -> None:
    with pytest.raises(ProfileNotFoundError):
        loader.load("/nonexistent/profile.toml", environ={})


def test_extends_cycle(tmp_path: Path) -> None:
    write(tmp_path / "a.toml", 'extends = "./b.toml"\n[model]\nsource = "x"\n')
    write(tmp_path / "b.toml", 'extends = "./a.toml"\n')
    with pytest.raises(ProfileError, match="cycle"):
        loader.load(str(tmp_path / "a.toml"), environ={})


def test_missing_model_source(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.toml", 'description = "nothing"\n')
    with pytest.raises(ProfileError, match="missing required key 'model'"):
        loader.load(str(path), environ={})


def test_cross_field_rules() -> None:
    with pytest.raises(ProfileError, match="tool_call_parser"):
        loader.load("cpu", environ={}, overrides=["engine.enable_auto_tool_choice=true"])
    with pytest.raises(ProfileError, match="mp mode"):
        loader.load("cpu", environ={}, overrides=["lmcache.eviction_policy=LFU"])
    with pytest.raises(ProfileError, match="not a decimal price"):
        loader.load("cpu", environ={}, overrides=["openrouter.pricing.prompt=cheap"])
    with pytest.raises(ProfileError, match="quantization"):
        loader.load("cpu", environ={}, overrides=["openrouter.quantization=int3"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1G", 2**30),
        ("1GiB", 2**30),
        ("512M", 512 * 2**20),
        ("1.5G", int(1.5 * 2**30)),
        ("123", 123),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


def test_parse_size_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_size("lots")


def test_show_round_trips(tmp_path: Path) -> None:
    for name in BUNDLED:
        profile = loader.load(name, environ={}).profile
        path = write(tmp_path / f"{name}.toml", writer.to_toml(profile))
        assert loader.load(str(path), environ={}).profile == profile.model_copy(
            update={"extends": None}
        )


def test_starter_extends_base_and_loads_as_the_base(infer_home: Path) -> None:
    text = writer.starter("mine", loader.load("h100", environ={}))
    path = write(infer_home / "profiles" / "mine.toml", text)
    loaded = loader.load(str(path), environ={})
    base = loader.load("h100", environ={}).profile
    assert loaded.profile.engine == base.engine
    assert loaded.profile.lmcache == base.lmcache
    assert "# max_num_seqs = 256" in text
    assert "# [openrouter.pricing]" in text


def test_the_prototypes_environment_variables_still_work() -> None:
    environ = {
        "MODEL_ID": "my-model",
        "MODEL_DISPLAY_NAME": "My Model",
        "MAX_CONTEXT_LENGTH": "16384",
        "QUANTIZATION": "fp8",
        "PRICE_PER_PROMPT_TOKEN": "0.0000002",
        "PRICE_PER_COMPLETION_TOKEN": "0.0000008",
        "REQUEST_TIMEOUT": "30",
    }
    profile = loader.load("h100", environ=environ).profile
    assert profile.model.name == "my-model"
    assert profile.model.context_length == 16384
    assert profile.openrouter.name == "My Model"
    assert profile.openrouter.quantization == "fp8"
    assert profile.openrouter.pricing.prompt == "0.0000002"  # kept exact, as a string
    assert profile.openrouter.pricing.completion == "0.0000008"
    assert profile.proxy.request_timeout == 30.0


def test_infer_variables_win_over_the_prototypes() -> None:
    environ = {"MODEL_ID": "old-name", "INFER_MODEL__SERVED_NAME": "new-name"}
    assert loader.load("h100", environ=environ).profile.model.name == "new-name"


def test_a_bad_prototype_variable_names_itself() -> None:
    with pytest.raises(ProfileError, match="MAX_CONTEXT_LENGTH='lots' is not a whole number"):
        loader.load("h100", environ={"MAX_CONTEXT_LENGTH": "lots"})


# --- [replicas] and L2 tiers ---------------------------------------------------------------------


def replica_error(*overrides: str, base: str = "h100x8-dp") -> str:
    with pytest.raises(ProfileError) as caught:
        loader.load(base, environ={}, overrides=list(overrides))
    return caught.value.one_line()


def test_replica_errors_name_the_key() -> None:
    assert "'replicas.count'" in replica_error("replicas.count=0")
    line = replica_error("replicas.count=4", "engine.tensor_parallel_size=3")
    assert "'replicas.gpus'" in line and "do not divide into replicas of 3" in line
    line = replica_error("replicas.count=5", "engine.tensor_parallel_size=2")
    assert "'replicas.count'" in line and "need 10 GPUs" in line and "at most 4" in line
    line = replica_error("replicas.device_groups=[[0], [1]]")
    assert "'replicas.device_groups'" in line and "2 group(s) for 8 replica(s)" in line
    line = replica_error("replicas.count=2", "replicas.device_groups=[[0], [0]]")
    assert "'replicas.device_groups'" in line and "two groups" in line
    line = replica_error("replicas.count=2", "replicas.device_groups=[[0, 1], [2, 3]]")
    assert "each replica needs 1 device(s)" in line
    line = replica_error("replicas.min_ready=9")
    assert "'replicas.min_ready'" in line and "more than the 8 replica(s)" in line
    line = replica_error("replicas.policy=round_robin", "replicas.cache_threshold=0.2")
    assert "'replicas.cache_threshold'" in line and "cache_aware" in line
    assert "'replicas.policy'" in replica_error("replicas.policy=fastest")


def test_workers_must_be_engine_urls() -> None:
    for bad, why in [
        ("gpu-b:8000", "not an engine URL"),
        ("http://gpu-b:8000/v1", "without a path"),
        ("http://user:pw@gpu-b:8000", "only scheme, host and port"),
        ("http://gpu-b:99999", "valid port"),
    ]:
        line = replica_error(f"replicas.workers=['{bad}']")
        assert "'replicas.workers'" in line and why in line, line
    line = replica_error("replicas.workers=['http://a:1', 'http://a:1/']")
    assert "listed twice" in line
    profile = loader.load("h100", environ={}, overrides=["replicas.workers=['HTTP://b:8000/']"])
    assert profile.profile.replicas.workers == ["http://b:8000"]


def test_replicas_that_cannot_be_are_refused() -> None:
    line = replica_error("replicas.count=2", base="sim")
    assert "'replicas.count'" in line and "simulated engine" in line
    line = replica_error("replicas.gpus=2", base="cpu-2x")
    assert "'replicas.gpus'" in line and "cpu" in line
    line = replica_error("engine.env={CUDA_VISIBLE_DEVICES='0'}")
    assert "'engine.env'" in line and "device_groups" in line
    line = replica_error("replicas.workers_api_key_env='my key'")
    assert "'replicas.workers_api_key_env'" in line


def test_replicas_defaults_keep_one_engine_and_no_router() -> None:
    replicas = loader.load("h100", environ={}).profile.replicas
    assert (replicas.count, replicas.ready_needed, replicas.routed) == (1, 1, False)
    two = loader.load("cpu-2x", environ={}, overrides=["replicas.min_ready=1"]).profile
    assert (two.replicas.count, two.replicas.ready_needed, two.replicas.routed) == (2, 1, True)
    assert two.engine.kv_cache_memory_bytes == 2**30  # the cpu profile's engine, extended
    assert two.lmcache.shared


def test_l2_tiers_are_checked() -> None:
    line = replica_error("lmcache.l2=[{type='disk', path='/x'}]", base="h100")
    assert "'lmcache.l2'" in line
    line = replica_error("lmcache.l2=[{type='fs', path='relative/dir'}]", base="h100")
    assert "absolute folder" in line
    line = replica_error("lmcache.l2=[{type='redis', url='http://r:6379'}]", base="h100")
    assert "redis://HOST:PORT" in line
    line = replica_error("lmcache.l2=[{type='redis', url='redis://u:secret@r:6379'}]", base="h100")
    assert "no credentials" in line
    line = replica_error("lmcache.l2=[{type='raw', adapter='{not json'}]", base="h100")
    assert "not a JSON object" in line
    line = replica_error("lmcache.l2=[{type='raw', adapter={port=1}}]", base="h100")
    assert "'type' string" in line
    line = replica_error("lmcache.mode=off", "lmcache.l2=[{type='fs', path='/x'}]", base="h100")
    assert "mode = 'mp'" in line


def test_l2_tiers_survive_show_and_the_starter(tmp_path: Path) -> None:
    tiers = "lmcache.l2=[{type='fs', path='/x'}, {type='raw', adapter={type='p2p', n=1}}]"
    loaded = loader.load("h100x8-dp", environ={}, overrides=[tiers])
    shown = write(tmp_path / "shown.toml", writer.to_toml(loaded.profile))
    assert loader.load(str(shown), environ={}).profile.lmcache.l2 == loaded.profile.lmcache.l2
    starter = writer.starter("mine", loaded).replace("# l2 = ", "l2 = ")
    again = loader.load(str(write(tmp_path / "mine.toml", starter)), environ={}).profile
    assert again.lmcache.l2 == loaded.profile.lmcache.l2
    assert again.replicas.count == 8
