"""Each split's instances from its source (`config.instances`): what the `instances` stage writes.

Synthetic splits are generated, `file` and `hf` records loaded (`instances.load`), `mutation` ones
made from real libraries (`instances.library_bugs`). The splits never share an instance id: a
mutation eval split skips the train split's mutations, and any other overlap is an error naming
both sources, since an instance trained on and evaluated on would inflate the resolve rate.
"""

from __future__ import annotations

from pathlib import Path

from daggerlm.config import FileSource, HubSource, InstancesConfig, MutationSource, RuntimeConfig, SyntheticSource
from daggerlm.config.instances import SplitConfig
from daggerlm.errors import InputError
from daggerlm.instances.load import load_hub, load_instances
from daggerlm.instances.schema import Instance

SPLITS = ("train", "eval")
FILE_SUFFIXES = (".jsonl", ".json", ".parquet")


def describe(spec: SplitConfig) -> str:
    """The source in a few words, for messages."""
    if isinstance(spec, FileSource):
        return f"file {spec.path}"
    if isinstance(spec, HubSource):
        return f"hf {spec.name}[{spec.split}]"
    if isinstance(spec, MutationSource):
        return f"mutation of {', '.join(spec.libraries) if spec.libraries else 'every library'} (seed {spec.seed})"
    return f"synthetic (seed {spec.seed})"


def source_deps(cfg: InstancesConfig) -> list[Path]:
    """The local files the sources read (a `file` path, a user's libraries file), from the params
    alone: the `instances` stage's DVC deps besides its params."""
    paths = [Path(s.path) if isinstance(s, FileSource) else Path(s.libraries_file)
             for s in (cfg.train, cfg.eval)
             if isinstance(s, FileSource) or (isinstance(s, MutationSource) and s.libraries_file)]
    return list(dict.fromkeys(paths))


def materialize(cfg: InstancesConfig, runtime: RuntimeConfig) -> dict[str, list[Instance]]:
    """Both splits, train first (a mutation eval split avoids its mutations); disjoint or an InputError."""
    train = split_instances(cfg, "train", runtime)
    evaluation = split_instances(cfg, "eval", runtime, exclude={i.instance_id for i in train})
    shared = sorted({i.instance_id for i in train} & {i.instance_id for i in evaluation})
    if shared:
        more = f" (and {len(shared) - 1} more)" if len(shared) > 1 else ""
        raise InputError(f"instances.train ({describe(cfg.train)}) and instances.eval ({describe(cfg.eval)}) share "
                         f"instance id '{shared[0]}'{more}; the splits must be disjoint")
    return {"train": train, "eval": evaluation}


def split_instances(cfg: InstancesConfig, split: str, runtime: RuntimeConfig,
                    exclude: set[str] | frozenset[str] = frozenset()) -> list[Instance]:
    """One split's instances from its source."""
    spec = getattr(cfg, split)
    where = f"instances.{split}"
    if isinstance(spec, SyntheticSource):
        from daggerlm.instances.synthetic import generate

        return generate(spec.n, split, spec.seed, cfg.modules_per_repo,  # type: ignore[arg-type]
                        cfg.functions_per_module)
    if isinstance(spec, MutationSource):
        return _mutations(spec, where, runtime, exclude)
    records = _file_records(spec, where) if isinstance(spec, FileSource) else load_hub(spec.name, spec.split)
    chosen = _select(records, spec, where)
    return [_with_official_image(i) for i in chosen] if spec.official_images else chosen


def _file_records(spec: FileSource, where: str) -> list[Instance]:
    path = Path(spec.path)
    if path.suffix not in FILE_SUFFIXES:
        raise InputError(f"{where}.path: {path}: expected a {', '.join(FILE_SUFFIXES)} file of instance records")
    if not path.is_file():
        raise InputError(f"{where}.path: {path}: file not found")
    return load_instances(path)


def _select(records: list[Instance], spec: FileSource | HubSource, where: str) -> list[Instance]:
    """The records `ids` or `slice` name (all by default); a selection that finds nothing is an error."""
    if spec.ids is not None:
        by_id = {i.instance_id: i for i in records}
        if missing := [i for i in spec.ids if i not in by_id]:
            raise InputError(f"{where}.ids: '{missing[0]}' is not in {describe(spec)} ({len(records)} records)")
        chosen = [by_id[i] for i in dict.fromkeys(spec.ids)]
    else:
        start, stop = spec.bounds(len(records))
        chosen = records[start:stop]
    if not chosen:
        raise InputError(f"{where}: no instances selected from {describe(spec)} ({len(records)} records"
                         + (f", slice {spec.slice})" if spec.slice else ")"))
    return chosen


def _with_official_image(instance: Instance) -> Instance:
    """A SWE-bench / SWE-Gym record that cannot run locally gets its official image (by name), so
    `runtime.kind: auto` runs it in Docker; others stay as they are."""
    from daggerlm.evaluation.harness import OFFICIAL_SOURCES, with_docker_spec

    if instance.source in OFFICIAL_SOURCES and not instance.image and not instance.runnable_locally:
        return with_docker_spec(instance)
    return instance


def _mutations(spec: MutationSource, where: str, runtime: RuntimeConfig, exclude: set[str] | frozenset[str]
               ) -> list[Instance]:
    """`spec.n` instances shared out over the libraries in their order; each library must give its share."""
    from daggerlm.instances.library_bugs import LIBRARIES, LibrarySkipped, load_libraries, mutate_library

    path = Path(spec.libraries_file) if spec.libraries_file else LIBRARIES
    known = load_libraries(path)
    names = spec.libraries or list(known)
    if unknown := [n for n in names if n not in known]:
        raise InputError(f"{where}.libraries: '{unknown[0]}' is not in {path} (known: {', '.join(known)})")
    if spec.n < len(names):
        raise InputError(f"{where}.n: {spec.n} is fewer than the {len(names)} libraries (each gives at least one)")
    out: list[Instance] = []
    for index, name in enumerate(names):
        share = spec.n // len(names) + (index < spec.n % len(names))
        try:
            items, report = mutate_library(known[name], share, spec.seed, Path(spec.cache), runtime, spec.workers,
                                           exclude=exclude)
        except LibrarySkipped as e:
            raise InputError(f"{where}.libraries: {name} gives no instances: {e}") from None
        if len(items) < share:
            raise InputError(f"{where}: {known[name].label} gave {len(items)} of its {share} instances "
                             f"({report['tried']} mutations tried; rejected: {report['rejected']}); lower n")
        out += items
    return out
