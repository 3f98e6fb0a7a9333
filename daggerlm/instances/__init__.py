"""Task instances in the SWE-bench schema: loading, validation and the synthetic family."""

from daggerlm.instances.load import load_instances, write_instances
from daggerlm.instances.schema import Instance

__all__ = ["Instance", "load_instances", "write_instances"]
