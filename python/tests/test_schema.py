"""The Python types hold to the JSON Schema the binary prints for each
document (``bootforge schema launch|advance|status|run-status|error``): the
same fields, types, nullability and required fields, so the two cannot
drift. A field the schema does not require may be absent: its Python type is
then ``Optional`` with a default of ``None``, even where the schema refuses
null (a ``status.json`` of an earlier runner lacks fields of a later one)."""

import dataclasses
import json
import os
import subprocess
from typing import Any, Union, get_args, get_origin, get_type_hints

import pytest

import bootforge
from bootforge import documents

pytestmark = pytest.mark.usefixtures("binary")

DOCUMENTS = {
    "launch": bootforge.Job,
    "advance": bootforge.Job,
    "status": bootforge.JobStatus,
    "jobs": bootforge.JobList,
    "log": bootforge.LogChunk,
    "run-status": bootforge.RunStatus,
    "error": bootforge.Failure,
}
# The schema's definitions and the dataclass each one is.
DEFINITIONS = {
    "EndedAttempt": bootforge.Attempt,
    "Finished": bootforge.Finished,
    "StateReason": bootforge.StateReason,
    "RunStatus": bootforge.RunStatus,
    "Gpu": bootforge.Gpu,
    "Notice": bootforge.Notice,
    "Environment": bootforge.Environment,
    "QueuedAt": bootforge.Queued,
    "JobRow": bootforge.JobRow,
    "Totals": bootforge.Totals,
}
SCALARS = {"integer": int, "number": float, "string": str, "boolean": bool}


def schema(document: str) -> dict[str, Any]:
    out = subprocess.run([os.environ["BOOTFORGE"], "schema", document], capture_output=True, check=True)
    return json.loads(out.stdout)


def optional(hint: Any) -> Any:
    """``X`` for ``Optional[X]``, else None."""
    if get_origin(hint) is Union:
        rest = [a for a in get_args(hint) if a is not type(None)]
        if len(rest) == 1 and len(get_args(hint)) == 2:
            return rest[0]
    return None


def nullable(prop: dict[str, Any]) -> "tuple[bool, dict[str, Any]]":
    """Whether ``prop`` admits null, and ``prop`` without it."""
    kinds = prop.get("type")
    if isinstance(kinds, list) and "null" in kinds:
        rest = [k for k in kinds if k != "null"]
        return True, {**prop, "type": rest[0] if len(rest) == 1 else rest}
    options = prop.get("anyOf")
    if options and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        return True, rest[0] if len(rest) == 1 else {"anyOf": rest}
    return False, prop


def mismatches(
    prop: dict[str, Any], hint: Any, defs: dict[str, Any], seen: set[str], where: str
) -> list[str]:
    inner = optional(hint)
    null, prop = nullable(prop)
    if null != (inner is not None):
        return [f"{where}: the schema {'admits' if null else 'refuses'} null, the type is {hint}"]
    hint = inner if inner is not None else hint
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[-1]
        if DEFINITIONS.get(name) is not hint:
            return [f"{where}: the schema's {name} is {DEFINITIONS.get(name)}, the type is {hint}"]
        return check(defs[name], hint, defs, seen, f"{where}<{name}>")
    kind = prop.get("type")
    if kind is None:
        return [] if hint is Any else [f"{where}: the schema admits anything, the type is {hint}"]
    if kind in SCALARS:
        return [] if SCALARS[kind] is hint else [f"{where}: the schema's {kind} is not {hint}"]
    if kind == "array":
        if get_origin(hint) is not list:
            return [f"{where}: the schema's array is not {hint}"]
        return mismatches(prop["items"], get_args(hint)[0], defs, seen, f"{where}[]")
    if kind == "object":
        if get_origin(hint) is not dict:
            return [f"{where}: the schema's map is not {hint}"]
        values = prop.get("additionalProperties", {})
        return mismatches(values, get_args(hint)[1], defs, seen, f"{where}{{}}")
    return [f"{where}: the schema's {kind} has no Python counterpart here"]


def check(
    definition: dict[str, Any], cls: Any, defs: dict[str, Any], seen: set[str], where: str
) -> list[str]:
    if cls.__name__ in seen:
        return []
    seen.add(cls.__name__)
    props = definition["properties"]
    required = set(definition.get("required", []))
    fields = {f.name: f for f in dataclasses.fields(cls)}
    problems = []
    if set(props) != set(fields):
        problems.append(
            f"{where}: only in the schema {sorted(set(props) - set(fields))}, "
            f"only in {cls.__name__} {sorted(set(fields) - set(props))}"
        )
    hints = get_type_hints(cls)
    for name in sorted(set(props) & set(fields)):
        field = fields[name]
        defaulted = (
            field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
        )
        if (name in required) == defaulted:
            problems.append(f"{where}.{name}: required {name in required}, yet defaulted {defaulted}")
        hint = hints[name]
        absent = name not in required and field.default is None and optional(hint) is not None
        if absent and not nullable(props[name])[0]:
            # May be absent, never null: None stands for absent.
            hint = optional(hint)
        problems += mismatches(props[name], hint, defs, seen, f"{where}.{name}")
    return problems


@pytest.mark.parametrize("document", sorted(DOCUMENTS))
def test_the_types_hold_to_the_binary_schema(document: str) -> None:
    published = schema(document)
    cls = DOCUMENTS[document]
    assert published["title"] == {"launch": "Report", "advance": "Report"}.get(document, cls.__name__)
    assert check(published, cls, published.get("$defs", {}), set(), cls.__name__) == []


def test_the_check_sees_a_drift() -> None:
    published = schema("status")
    drifted = json.loads(json.dumps(published))
    drifted["properties"]["phase"] = {"type": "integer"}
    drifted["properties"]["heartbeat"] = {"type": "string"}
    problems = check(drifted, bootforge.JobStatus, drifted["$defs"], set(), "JobStatus")
    assert any("heartbeat" in p for p in problems), problems
    assert any(".phase" in p for p in problems), problems


def test_decode_refuses_a_document_of_another_shape() -> None:
    with pytest.raises(ValueError, match=r"Gpu\.name: expected str"):
        documents.decode(bootforge.Gpu, {"name": 3, "driver": "550"})
    with pytest.raises(ValueError, match="missing"):
        documents.decode(bootforge.Gpu, {"name": "L40S"})
