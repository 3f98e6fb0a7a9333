"""Typed configuration: one pydantic model per `params.yaml` section, each in the module of its
component's kind; this package imports nothing of daggerlm but `errors` and `io`, so every
component can import its config without cycles.

Field docstrings are the documentation. Unknown keys are errors (`extra="forbid"`), so a typo in
params.yaml fails with one line naming the key instead of being silently ignored.
"""

from daggerlm.config.base import Section, record_reads
from daggerlm.config.dagger import BetaSchedule, DaggerConfig, EvalConfig
from daggerlm.config.instances import (FileSource, HubSource, InstancesConfig, MutationSource, SplitConfig,
                                       SyntheticSource)
from daggerlm.config.params import Params, edit_params, load_params, set_iterations
from daggerlm.config.policies import EndpointConfig, Sampling, StudentConfig, StudentServerConfig, TeacherConfig
from daggerlm.config.runtime import AgentConfig, RuntimeConfig
from daggerlm.config.training import TinyModelConfig, TrainConfig

__all__ = ["AgentConfig", "BetaSchedule", "DaggerConfig", "EndpointConfig", "EvalConfig", "FileSource", "HubSource",
           "InstancesConfig", "MutationSource", "Params", "RuntimeConfig", "Sampling", "Section", "SplitConfig",
           "StudentConfig", "StudentServerConfig", "SyntheticSource", "TeacherConfig", "TinyModelConfig",
           "TrainConfig", "edit_params", "load_params", "record_reads", "set_iterations"]
