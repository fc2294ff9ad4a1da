"""What to run: an experiment file's fields (``fields``), the file parsed and checked into an
``Experiment`` (``experiment``) and its grid of variants and groups (``grid``), all checked before any
JAX code runs.

``from sweep.config import X`` serves every name of ``fields`` and ``experiment``.
"""

from sweep.config.experiment import (
    Axis,
    Experiment,
    experiment_from_dict,
    load_experiment,
    named_overrides,
    parse_override,
    parse_value,
    read_toml,
)
from sweep.config.fields import (
    ADDED_FIELDS,
    BRANCH_FIELDS,
    DATASETS,
    DYNAMIC_FIELDS,
    FIELDS,
    MIX_FIELDS,
    MIXES,
    OPTIMIZERS,
    OVERRIDE_TABLES,
    SECTIONS,
    STATIC_FIELDS,
    Config,
    ConfigError,
    DataConfig,
    Field,
    MeasureConfig,
    ModelConfig,
    TrainConfig,
    axis_name,
    parse_layer_scales,
)

__all__ = [
    "ADDED_FIELDS",
    "BRANCH_FIELDS",
    "DATASETS",
    "DYNAMIC_FIELDS",
    "FIELDS",
    "MIXES",
    "MIX_FIELDS",
    "OPTIMIZERS",
    "OVERRIDE_TABLES",
    "SECTIONS",
    "STATIC_FIELDS",
    "Axis",
    "Config",
    "ConfigError",
    "DataConfig",
    "Experiment",
    "Field",
    "MeasureConfig",
    "ModelConfig",
    "TrainConfig",
    "axis_name",
    "experiment_from_dict",
    "load_experiment",
    "named_overrides",
    "parse_layer_scales",
    "parse_override",
    "parse_value",
    "read_toml",
]
