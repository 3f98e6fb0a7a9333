"""All sections together (`Params`), and params.yaml: load, validate, edit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import UnionType
from typing import Annotated, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError, model_validator

from daggerlm.config.base import Section
from daggerlm.config.dagger import DaggerConfig, EvalConfig
from daggerlm.config.instances import InstancesConfig
from daggerlm.config.policies import StudentConfig, TeacherConfig
from daggerlm.config.runtime import AgentConfig, RuntimeConfig
from daggerlm.config.training import TrainConfig
from daggerlm.errors import InputError
from daggerlm.io import atomic_write_text, load_yaml


class Params(Section):
    seed: int = 0
    data: str = "data"
    """Root of every stage output (instances/, rollouts/iter_K/, labels/, aggregated/, checkpoints/, eval/)."""
    instances: InstancesConfig = InstancesConfig()
    student: StudentConfig = StudentConfig()
    teacher: TeacherConfig = TeacherConfig()
    dagger: DaggerConfig = DaggerConfig()
    train: TrainConfig = TrainConfig()
    evaluation: EvalConfig = EvalConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    agent: AgentConfig = AgentConfig()

    @model_validator(mode="after")
    def _teacher_gives_what_the_objective_needs(self) -> "Params":
        objective, gives = self.train.objective, self.teacher.gives()
        needs = objective.teacher_needs()
        if needs and (gives == "text" or (objective.targets == "full" and gives != "full")):
            teacher = self.teacher.kind + (" with endpoint.logprobs" if gives == "top_k" else
                                           " without endpoint.logprobs" if self.teacher.kind == "openai" else "")
            raise ValueError(f"train.objective needs {needs}; teacher.kind {teacher} gives "
                             f"{'text labels only' if gives == 'text' else 'top-k log-probs only'}")
        if needs and gives == "top_k" and objective.targets == "hard" and objective.temperature != 1.0:
            raise ValueError("train.objective.temperature: a served teacher's log-prob of a token is at temperature 1 "
                             "(vLLM's raw logprobs); hard targets with reverse KL need temperature 1, or use "
                             "targets top_k (renormalised over the k ids at any temperature)")
        if self.teacher.kind == "hf" and not self.teacher.model:
            raise ValueError("teacher.kind hf needs teacher.model (a model directory or hub id)")
        return self


def _models(annotation: object) -> dict[str, type[BaseModel]]:
    """The models a field holds, by the tag a validation error puts in its path: {"": M} for a model,
    {"file": FileSource, ...} for a union tagged by `source` (`instances.train`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {"": annotation}
    if get_origin(annotation) is Annotated:
        return _models(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        members = [m for a in get_args(annotation) for m in _models(a).values()]
        return {get_args(m.model_fields["source"].annotation)[0]: m for m in members if "source" in m.model_fields}
    return {}


def _resolve(loc: tuple) -> tuple[str, type[BaseModel] | None]:
    """(the dotted key as the user wrote it, union tags left out; the model that holds its last part)."""
    model: type[BaseModel] | None = Params
    shown: list[str] = []
    parts = [str(p) for p in loc]
    while parts:
        part = parts.pop(0)
        shown.append(part)
        field = model.model_fields.get(part) if model is not None else None
        if not parts:
            break
        models = _models(field.annotation) if field is not None else {}
        if "" in models:
            model = models[""]
        elif parts[0] in models:
            model = models[parts.pop(0)]
        else:
            model = None
    return ".".join(shown), model


def _describe(err: ValidationError, source: str) -> str:
    e = err.errors()[0]
    key, model = _resolve(tuple(e["loc"]))
    if e["type"] == "extra_forbidden":
        allowed = sorted(model.model_fields) if model is not None else []
        return f"{source}: unknown key '{key}'" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
    if e["type"] == "union_tag_invalid":
        expected = e["ctx"]["expected_tags"].replace("'", "")
        return f"{source}: {key}.source: {e['ctx']['tag']!r} is not a source; expected one of {expected}"
    if e["type"] == "missing":
        return f"{source}: {key}: required, missing"
    if e["type"] == "value_error" and isinstance(e["input"], dict):  # a rule across fields: they are named in it
        return f"{source}: {key + ': ' if key else ''}{e['msg'].removeprefix('Value error, ')}"
    shown = "hidden" if "key" in key else repr(e["input"])  # a key put where its name belongs stays out of logs
    return f"{source}: {key}: {e['msg']} (got {shown})"


def load_params(path: str | Path | None = None, overrides: dict | None = None) -> Params:
    """Load params.yaml (absent file: defaults), apply overrides, validate."""
    data: dict = {}
    source = str(path) if path else "<defaults>"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise InputError(f"{p}: params file not found")
        try:
            data = load_yaml(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise InputError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise InputError(f"{p}: expected a mapping of sections at the top level")
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    try:
        return Params.model_validate(data)
    except ValidationError as err:
        raise InputError(_describe(err, source)) from None


def edit_params(path: str | Path, edit: Callable[[dict], None]) -> Params:
    """Apply `edit` to a params file, keeping its comments, quotes and layout; validate; write only
    if something changed. Returns the params as edited."""
    import io

    from ruamel.yaml import YAML

    path = Path(path)
    rt = YAML()
    rt.preserve_quotes = True
    before = path.read_text() if path.is_file() else ""
    data = rt.load(before) or {}
    edit(data)
    data.pop("pipeline", None)  # written by earlier versions; dvc.yaml now carries the per-iteration paths
    buffer = io.StringIO()
    rt.dump(data, buffer)
    try:
        params = Params.model_validate(load_yaml(buffer.getvalue()))
    except ValidationError as err:
        raise InputError(_describe(err, str(path))) from None
    if buffer.getvalue() != before:
        atomic_write_text(path, buffer.getvalue())
    return params


def set_iterations(path: str | Path, n: int) -> Params:
    """Rewrite `dagger.iterations` in a params file."""
    return edit_params(path, lambda data: data.setdefault("dagger", {}).__setitem__("iterations", n))
