"""Images built locally on top of the base image: one per repository environment, one per instance.

An environment image holds a repository's test dependencies (installed on the host by pip for the
image's python with `--target`, so nothing is fetched from inside a container, whose network is off)
and the repository's code at /testbed. An instance image is its environment image with /testbed at
the instance's `base_commit`: what the official SWE-bench harness runs, by the record's `image`.
Each image carries labels naming what it was built from, so a stale one is rebuilt, an up-to-date
one reused.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from swebench.image_builder.image_spec import ImageSpec

from daggerlm.errors import InputError
from daggerlm.instances.schema import Instance
from daggerlm.runtime.docker import BASE_IMAGE, TESTBED, client, env_image_tag, repository_tar

IMAGE_FORMAT = "2"  # bumped when what goes into an image changes: older ones are rebuilt


def sweb_image_name(instance_id: str, namespace: str, tag: str = "latest") -> str:
    """`<namespace>/sweb.eval.x86_64.<id, __ as _1776_>:<tag>`, by swebench's own naming rule."""
    return ImageSpec(instance_id=instance_id, dockerfile="(built elsewhere)", namespace=namespace, tag=tag).name


@dataclass(frozen=True)
class ImageSet:
    """Where a dataset publishes its prebuilt instance images, and how it spells an instance id in a
    name (Docker Hub allows no `__`, and each publisher chose its own stand-in)."""

    namespace: str
    dunder: str


# The one place the published images are named: SWE-bench's own (swebench's `ImageSpec` rule) and
# SWE-Gym's (OpenHands' `get_instance_docker_image` in SWE-Gym/OpenHands evaluation/swe_bench/run_infer.py).
OFFICIAL_IMAGES: dict[str, ImageSet] = {"swebench": ImageSet("swebench", "_1776_"),
                                        "swe-gym": ImageSet("xingyaoww", "_s_")}


def official_image_name(instance_id: str, images: str, namespace: str | None = None, tag: str = "latest") -> str:
    """The published image of `instance_id` in the image set `images` (a key of OFFICIAL_IMAGES), under
    `namespace` (default: the set's own; another is a mirror that keeps the set's names)."""
    if images not in OFFICIAL_IMAGES:
        raise InputError(f"image set {images!r}: expected one of {', '.join(OFFICIAL_IMAGES)}")
    chosen = OFFICIAL_IMAGES[images]
    return f"{namespace or chosen.namespace}/sweb.eval.x86_64.{instance_id}:{tag}".replace("__", chosen.dunder).lower()


def instance_image_tag(instance_id: str) -> str:
    """Named like the official images, under our own namespace."""
    return sweb_image_name(instance_id, "daggerlm")


def _current(tag: str, labels: dict[str, str]) -> bool:
    try:
        image = client().images.get(tag)
    except Exception:
        return False
    return all((image.labels or {}).get(k) == v for k, v in labels.items())


def _require(tag: str, hint: str):
    try:
        return client().images.get(tag)
    except Exception:
        raise InputError(f"image {tag!r} not found locally ({hint})") from None


def _site_packages_tar(base: str, requirements: list[str], pth: str = "") -> bytes:
    """`requirements` installed for the base image's python, as a tar rooted at its site-packages; `pth`:
    a path file there (putting the worktree's directories on `sys.path`, as an editable install does)."""
    probe = "import sys, sysconfig; print('%d.%d' % sys.version_info[:2]); print(sysconfig.get_path('purelib'))"
    out = client().containers.run(base, ["python3", "-c", probe], remove=True, network_mode="none").decode()
    py_version, purelib = out.split()
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile",
                            "--target", tmp, "--python-version", py_version, "--only-binary=:all:", *requirements],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"pip install {' '.join(requirements)} for python {py_version} failed: "
                               f"{(r.stderr.strip().splitlines() or ['?'])[-1]}")
        if pth:
            Path(tmp, "__editable__.daggerlm-worktree.pth").write_text(pth)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            tar.add(tmp, arcname=purelib.lstrip("/"))
        return buffer.getvalue()


def _commit(source: str, tag: str, labels: dict[str, str], archives: list[bytes]) -> str:
    """A new image `tag`: `source` with the tar `archives` unpacked at / (the /testbed one replaces it)."""
    docker = client()
    container = docker.containers.create(source, command=["sleep", "infinity"], network_mode="none")
    try:
        container.start()
        container.exec_run(["rm", "-rf", TESTBED])
        for data in archives:
            if not container.put_archive("/", data):
                raise RuntimeError(f"copying files into {tag} failed")
        container.stop(timeout=1)
        repository, _, version = tag.rpartition(":")
        # StopSignal: nothing in these containers needs a graceful stop (the harness's `docker stop
        # --time=15` would otherwise wait 15 s on a PID 1 that ignores SIGTERM)
        container.commit(repository=repository, tag=version,
                         conf={"Labels": labels, "WorkingDir": TESTBED, "StopSignal": "SIGKILL"})
    finally:
        container.remove(force=True)
    return tag


def build_env_image(clean: Instance, requirements: list[str], base: str = BASE_IMAGE,
                    worktree_paths: list[str] = ()) -> str:
    """The environment image of `clean.environment`: `requirements` installed, `clean`'s code at /testbed;
    `worktree_paths` (e.g. `src`, relative to /testbed) first on `sys.path`, as an editable install has them."""
    if not clean.environment:
        raise InputError(f"instance {clean.instance_id}: no environment to build an image for")
    _require(base, "`daggerlm docker build-base` builds it")
    tag = env_image_tag(clean.environment)
    labels = {"daggerlm.requirements": json.dumps(requirements), "daggerlm.commit": clean.base_commit,
              "daggerlm.base": base, "daggerlm.format": IMAGE_FORMAT,
              **({"daggerlm.worktree_paths": json.dumps(list(worktree_paths))} if worktree_paths else {})}
    if _current(tag, labels):
        return tag
    # an import line, not a path line: a path line goes after site-packages, where the library's installed copy
    # (there for its metadata) would shadow the worktree
    pth = "".join(f"import sys; sys.path.insert(0, {f'{TESTBED}/{p}'!r})\n" for p in worktree_paths)
    return _commit(base, tag, labels, [_site_packages_tar(base, requirements, pth), repository_tar(clean)])


def build_instance_image(instance: Instance, base: str = BASE_IMAGE) -> str:
    """`instance`'s image: its environment image (or the base) with /testbed at `base_commit`."""
    source = env_image_tag(instance.environment) if instance.environment else base
    source_image = _require(source, "`daggerlm docker build-env` builds environment images" if instance.environment
                            else "`daggerlm docker build-base` builds it")
    tag = instance_image_tag(instance.instance_id)
    labels = {"daggerlm.commit": instance.base_commit, "daggerlm.source": source, "daggerlm.format": IMAGE_FORMAT,
              "daggerlm.source_id": source_image.id}
    if _current(tag, labels):
        return tag
    return _commit(source, tag, labels, [repository_tar(instance)])
