"""ray_cluster.yaml is a valid ``ray up`` config (Ray's own schema) with the node types the
scan design relies on."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_cluster_yaml_validates_against_rays_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    config = prepare_config(raw)  # fills the provider defaults, as `ray up` does
    validate_config(config)
    types = config["available_node_types"]
    assert set(types) == {"head", "cpu_fetch", "gpu"}
    assert types["head"]["resources"] == {"CPU": 0}  # no analyze actors on the driver's node
    assert types["gpu"]["node_config"]["InstanceType"].startswith(("g", "p"))
    assert 0 == types["gpu"]["min_workers"] < types["gpu"]["max_workers"]
    assert 0 == types["cpu_fetch"]["min_workers"] < types["cpu_fetch"]["max_workers"]
    assert any("pip install" in c and "hubscan" in c for c in config["setup_commands"])
    assert config["file_mounts"] == {"~/hubscan": "."}
