"""A small kustomize renderer, enough for deploy/ (no kustomize binary on the test machines).

It supports exactly the fields deploy/ uses, and refuses any other field, so a kustomization
that grows a feature this renderer does not know fails loudly instead of rendering differently
from `kubectl kustomize`:

- `resources`: files (multi-document YAML) and directories holding a kustomization.yaml;
- `namespace`: set on every namespaced object (and as the name of a Namespace object, as
  kustomize does);
- `images`: `name` -> `newName` / `newTag` in the containers of pod templates;
- `patches`: a file (`path`) or inline (`patch`), either a strategic merge patch (one or several
  documents, matched by kind and name, or applied to every `target` match) or a JSON 6902 patch
  (a list of `add` / `replace` / `remove` operations) applied to every `target` match;
- `configMapGenerator`: a ConfigMap per entry from `files` (each `path` or `key=path`), with
  `options.labels`, and `options.disableNameSuffixHash: true` required (kustomize's name hash is
  not reproduced here).

Strategic merge covers what the manifests need: maps merge recursively, lists of named objects
(containers, env, ports, volumes, volumeMounts) merge by name, any other list is replaced.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

Manifest = dict[str, Any]

KNOWN_FIELDS = {"apiVersion", "kind", "resources", "namespace", "images", "patches", "configMapGenerator"}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
}
# Lists merged by a key in a strategic merge patch (the rest are replaced).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "name",
    "ports": "containerPort",
}
POD_TEMPLATE_PATHS = (("spec", "template", "spec"), ("spec", "jobTemplate", "spec", "template", "spec"))


class KustomizeError(ValueError):
    pass


def load_documents(path: Path) -> list[Manifest]:
    with path.open() as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def render(directory: Path) -> list[Manifest]:
    """The objects `kubectl kustomize <directory>` would print (order aside)."""
    directory = Path(directory)
    kustomization_file = directory / "kustomization.yaml"
    if not kustomization_file.is_file():
        raise KustomizeError(f"{directory}: no kustomization.yaml")
    kustomization = yaml.safe_load(kustomization_file.read_text()) or {}
    unknown = set(kustomization) - KNOWN_FIELDS
    if unknown:
        raise KustomizeError(f"{kustomization_file}: fields this renderer does not support: {sorted(unknown)}")

    objects: list[Manifest] = []
    for entry in kustomization.get("resources", []):
        target = (directory / entry).resolve()
        if target.is_dir():
            objects += render(target)
        elif target.is_file():
            objects += load_documents(target)
        else:
            raise KustomizeError(f"{kustomization_file}: resource {entry} does not exist")
    objects += [_generate_config_map(spec, directory) for spec in kustomization.get("configMapGenerator", [])]
    _check_unique(objects, kustomization_file)

    for patch in kustomization.get("patches", []):
        _apply_patch(objects, patch, directory)
    for image in kustomization.get("images", []):
        _apply_image(objects, image)
    if "namespace" in kustomization:
        _apply_namespace(objects, kustomization["namespace"])
    return objects


def object_id(obj: Manifest) -> tuple[str, str, str]:
    return (obj.get("apiVersion", ""), obj.get("kind", ""), obj.get("metadata", {}).get("name", ""))


def _check_unique(objects: list[Manifest], where: Path) -> None:
    seen: set[tuple[str, str, str]] = set()
    for obj in objects:
        key = object_id(obj)
        if key in seen:
            raise KustomizeError(f"{where}: {key} is defined twice")
        seen.add(key)


def _generate_config_map(spec: Manifest, directory: Path) -> Manifest:
    unknown = set(spec) - {"name", "files", "options"}
    options = spec.get("options", {})
    unknown |= {f"options.{key}" for key in set(options) - {"labels", "disableNameSuffixHash"}}
    if unknown:
        raise KustomizeError(f"configMapGenerator fields this renderer does not support: {sorted(unknown)}")
    if options.get("disableNameSuffixHash") is not True:
        raise KustomizeError(f"configMapGenerator {spec['name']}: set options.disableNameSuffixHash: true")
    data = {}
    for entry in spec["files"]:
        key, _, path = entry.rpartition("=")
        data[key or Path(path).name] = (directory / path).read_text()
    metadata: Manifest = {"name": spec["name"]}
    if "labels" in options:
        metadata["labels"] = dict(options["labels"])
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


# --- patches ------------------------------------------------------------------------------------


def _apply_patch(objects: list[Manifest], spec: Manifest, directory: Path) -> None:
    unknown = set(spec) - {"path", "patch", "target"}
    if unknown:
        raise KustomizeError(f"patch fields this renderer does not support: {sorted(unknown)}")
    if "path" in spec:
        text = (directory / spec["path"]).read_text()
    elif "patch" in spec:
        text = spec["patch"]
    else:
        raise KustomizeError(f"a patch needs `path` or `patch`: {spec}")
    documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    target = spec.get("target")
    if len(documents) == 1 and isinstance(documents[0], list):
        if target is None:
            raise KustomizeError("a JSON 6902 patch needs a target")
        matches = _matching(objects, target)
        for obj in matches:
            _json6902(obj, documents[0])
        return
    for document in documents:
        if not isinstance(document, dict):
            raise KustomizeError(f"not a strategic merge patch: {document!r}")
        if target is not None:
            matches = _matching(objects, target)
        else:
            matches = [
                obj
                for obj in objects
                if obj.get("kind") == document.get("kind")
                and obj["metadata"]["name"] == document.get("metadata", {}).get("name")
            ]
            if len(matches) != 1:
                raise KustomizeError(f"strategic merge patch {object_id(document)} matches {len(matches)} objects")
        for obj in matches:
            # The patch's own identity only selects its object; with a target it is ignored.
            body = {k: v for k, v in document.items() if k not in {"apiVersion", "kind"}}
            if target is not None:
                body.pop("metadata", None)
            _merge(obj, copy.deepcopy(body))


def _matching(objects: list[Manifest], target: Manifest) -> list[Manifest]:
    unknown = set(target) - {"kind", "name", "labelSelector", "group", "version"}
    if unknown:
        raise KustomizeError(f"target fields this renderer does not support: {sorted(unknown)}")
    found = []
    for obj in objects:
        if "kind" in target and obj.get("kind") != target["kind"]:
            continue
        if "name" in target and not re.fullmatch(target["name"], obj["metadata"]["name"]):
            continue
        group, _, version = obj.get("apiVersion", "").rpartition("/")
        if "group" in target and target["group"] != group:
            continue
        if "version" in target and target["version"] != version:
            continue
        if "labelSelector" in target and not _selects(target["labelSelector"], obj["metadata"].get("labels", {})):
            continue
        found.append(obj)
    if not found:
        raise KustomizeError(f"patch target {target} matches nothing")
    return found


def _selects(selector: str, labels: dict[str, str]) -> bool:
    for term in selector.split(","):
        key, sep, value = term.partition("=")
        if not sep or key.endswith("!"):
            raise KustomizeError(f"label selectors here are `key=value` terms only: {selector}")
        if labels.get(key.strip()) != value.strip():
            return False
    return True


def _merge(base: Any, patch: Any, field: str | None = None) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        for key, value in patch.items():
            if value is None:
                base.pop(key, None)
            elif key in base:
                base[key] = _merge(base[key], value, key)
            else:
                base[key] = copy.deepcopy(value)
        return base
    if isinstance(base, list) and isinstance(patch, list) and field in MERGE_KEYS:
        key = MERGE_KEYS[field]
        merged = list(base)
        for item in patch:
            index = next((i for i, existing in enumerate(merged) if existing.get(key) == item.get(key)), None)
            if index is None:
                merged.append(copy.deepcopy(item))
            else:
                merged[index] = _merge(merged[index], item, None)
        return merged
    return copy.deepcopy(patch)


def _json6902(obj: Manifest, operations: list[Manifest]) -> None:
    for operation in operations:
        op, path = operation["op"], operation["path"]
        if op not in {"add", "replace", "remove"}:
            raise KustomizeError(f"JSON patch op {op} is not supported here")
        parts = [part.replace("~1", "/").replace("~0", "~") for part in path.lstrip("/").split("/")]
        parent: Any = obj
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        if isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if op == "add":
                parent.insert(index, copy.deepcopy(operation["value"]))
            elif op == "replace":
                parent[index] = copy.deepcopy(operation["value"])
            else:
                del parent[index]
        else:
            if op in {"replace", "remove"} and last not in parent:
                raise KustomizeError(f"JSON patch {op} {path}: no such field in {object_id(obj)}")
            if op == "remove":
                del parent[last]
            else:
                parent[last] = copy.deepcopy(operation["value"])


# --- images and namespace -----------------------------------------------------------------------


def pod_specs(obj: Manifest) -> list[Manifest]:
    specs = []
    for path in POD_TEMPLATE_PATHS:
        node: Any = obj
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            specs.append(node)
    return specs


def _split_image(image: str) -> tuple[str, str | None]:
    name, _, digest = image.partition("@")
    if digest:
        return name, None
    head, sep, tag = name.rpartition(":")
    if sep and "/" not in tag:
        return head, tag
    return name, None


def _apply_image(objects: list[Manifest], image: Manifest) -> None:
    unknown = set(image) - {"name", "newName", "newTag"}
    if unknown:
        raise KustomizeError(f"image fields this renderer does not support: {sorted(unknown)}")
    for obj in objects:
        for spec in pod_specs(obj):
            for container in spec.get("containers", []) + spec.get("initContainers", []):
                name, tag = _split_image(container["image"])
                if name != image["name"]:
                    continue
                new_name = image.get("newName", name)
                new_tag = image.get("newTag", tag)
                container["image"] = f"{new_name}:{new_tag}" if new_tag else new_name


def _apply_namespace(objects: list[Manifest], namespace: str) -> None:
    for obj in objects:
        if obj.get("kind") == "Namespace":
            obj["metadata"]["name"] = namespace
        elif obj.get("kind") not in CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = namespace
