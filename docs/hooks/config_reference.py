"""MkDocs hook: the config reference page (``config.md``), generated from the typed configs.

Registered under ``hooks:`` in ``mkdocs.yml``. At every build it calls
``neuroprobe.config.experiment_json_schema()`` (the JSON Schema of an experiment config, pydantic's
``model_json_schema()``) and adds ``config.md`` to the build as a generated file: nothing is
written into ``docs/``, and the page always matches the code it documents.

The page has one table per section (key | type | default | allowed / constraints | description):
the top level, then every table-valued key (``model`` / ``network``, ``task``, ``rule``,
``modulator``, ``monitor``, ``run``, and nested tables such as ``network.population``). A key
whose value is one of several tables told apart by a discriminator (``task`` and ``rule`` by their
``name``) gets one table per variant. Descriptions come from the models' field docstrings.

If the schema cannot be obtained (the function is missing, raises, or returns something that is
not an object schema) the build fails with a one-line error saying so: the page is never left
silently empty.

Run by hand to print the page: ``.venv/bin/python docs/hooks/config_reference.py``.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

PAGE = "config.md"
SCHEMA_FUNCTION = "neuroprobe.config.experiment_json_schema"

# sections in this order first (when present), then any others in schema order
SECTION_ORDER = ("model", "network", "task", "rule", "modulator", "monitor", "run")
DISCRIMINATOR_KEYS = ("name", "kind")

INTRO = """\
# Config reference

An experiment is one TOML file (`neuroprobe run CONFIG.toml`; examples in `experiments/`). Every
key below is checked when the file is read: an unknown key, a value of the wrong type (`"no"` is
not a boolean, `1.5` is not an integer) or a value out of range is reported as one line naming the
file, the key and what is allowed, and `neuroprobe` exits with code 2. Any key can be overridden
on the command line with `--set section.key=value`.

This page is generated at build time from the JSON Schema of the typed configs
(`neuroprobe.config.experiment_json_schema()`), so it always matches the code. *required* marks a
key without a default, *optional* one whose absence means "none" (an empty list for
lists); tables that are chosen by a key (`task` and `rule` by their `name`) list
each variant separately.
"""


class SchemaError(Exception):
    """The schema has a shape this generator does not understand."""


# --------------------------------------------------------------------------- schema helpers


class Schema:
    """A JSON Schema document with ``$ref`` resolution (local ``#/...`` pointers only)."""

    def __init__(self, root: dict):
        self.root = root

    def deref(self, node: Any, seen: frozenset = frozenset()) -> dict:
        """``node`` with its ``$ref`` followed (sibling keys such as ``description`` and
        ``default`` kept on top of the target's)."""
        if not isinstance(node, dict):
            return {}
        ref = node.get("$ref")
        if not isinstance(ref, str):
            return node
        if ref in seen:
            raise SchemaError(f"circular $ref {ref}")
        if not ref.startswith("#/"):
            raise SchemaError(f"only local $ref pointers are supported, got {ref!r}")
        target: Any = self.root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise SchemaError(f"$ref {ref!r} points nowhere")
            target = target[part]
        merged = dict(self.deref(target, seen | {ref}))
        merged.update({k: v for k, v in node.items() if k != "$ref"})
        return merged

    @staticmethod
    def ref_name(node: Any) -> str | None:
        if isinstance(node, dict) and isinstance(node.get("$ref"), str):
            return node["$ref"].rsplit("/", 1)[-1]
        return None

    def options(self, node: dict) -> list[dict] | None:
        """The alternatives of a union (``oneOf`` / ``anyOf``), else None."""
        for key in ("oneOf", "anyOf"):
            if isinstance(node.get(key), list):
                return node[key]
        return None

    def strip_null(self, node: dict) -> tuple[dict, bool]:
        """(the node without a ``null`` alternative, whether it had one)."""
        opts = self.options(node)
        if opts is None:
            return node, node.get("type") == "null"
        rest = [o for o in opts if self.deref(o).get("type") != "null"]
        if len(rest) == len(opts):
            return node, False
        keep = {k: v for k, v in node.items() if k not in ("oneOf", "anyOf")}
        if len(rest) == 1:
            inner = self.deref(rest[0])
            return {**inner, **{k: v for k, v in keep.items() if k not in inner or k in ("description", "default")}}, True
        return {**keep, "anyOf": rest}, True

    def is_object(self, node: Any) -> bool:
        node = self.deref(node)
        return node.get("type") == "object" and isinstance(node.get("properties"), dict)

    def object_variants(self, node: Any) -> list[tuple[str | None, dict]] | None:
        """The table(s) a key may hold: ``[(None, schema)]`` for one table, ``[(label, schema), …]``
        for a union of tables (label = the discriminator value(s)); None if the key is no table."""
        tables, others = self.table_options(node)
        return tables if tables and not others else None

    def table_options(self, node: Any) -> tuple[list[tuple[str | None, dict]], list[dict]]:
        """(the tables a value may be, with their labels; its other, non-table alternatives)."""
        node, _ = self.strip_null(self.deref(node))
        if self.is_object(node):
            return [(None, self.deref(node))], []
        opts = self.options(node)
        if not opts:
            return [], [node]
        tables = [o for o in opts if self.is_object(o)]
        others = [self.deref(o) for o in opts if not self.is_object(o)]
        if not tables:
            return [], [node]
        if others:  # e.g. a population name or a table: tables labelled by their title
            return [(None, self.deref(o)) for o in tables], others
        labels: dict[int, list[str]] = {}
        disc = node.get("discriminator") if isinstance(node.get("discriminator"), dict) else {}
        prop = disc.get("propertyName")
        mapping = disc.get("mapping") or {}
        for value, ref in mapping.items():
            for i, o in enumerate(opts):
                if isinstance(o, dict) and o.get("$ref") == ref:
                    labels.setdefault(i, []).append(str(value))
        out = []
        for i, o in enumerate(opts):
            obj = self.deref(o)
            key, values = self._tag_values(obj, prop)
            if not values:
                key, values = prop, labels.get(i)
            label = _variant_label(key, values) if values else (obj.get("title") or self.ref_name(o) or f"variant {i + 1}")
            out.append((label, obj))
        return out, []

    def _tag_values(self, obj: dict, prop: str | None) -> tuple[str | None, list[str]]:
        for key in ([prop] if prop else []) + list(DISCRIMINATOR_KEYS):
            p = self.deref(obj["properties"].get(key, {}))
            if "const" in p:
                return key, [str(p["const"])]
            if isinstance(p.get("enum"), list):
                return key, [str(v) for v in p["enum"]]
        return None, []


def _variant_label(key: str | None, values: list[str]) -> str:
    shown = ", ".join(f'"{v}"' for v in values)
    if key is None:
        return shown
    return f"{key} = {shown}" if len(values) == 1 else f"{key} ∈ {{{shown}}}"


# --------------------------------------------------------------------------- cell formatting


def _num(x: Any) -> str:
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        for delta, suffix in ((0, ""), (1, " − 1")):  # large powers of two (minus one) as 2^k
            m = abs(x) + delta
            if abs(x) >= 2**20 and m & (m - 1) == 0:
                return f"{'-' if x < 0 else ''}2^{m.bit_length() - 1}{suffix}"
        return str(x)
    if isinstance(x, float):
        if x.is_integer() and abs(x) < 1e15:
            return str(int(x)) if abs(x) < 1e6 else f"{x:g}"
        return repr(x) if 1e-4 <= abs(x) < 1e6 else f"{x:g}"
    return str(x)


def toml_value(v: Any) -> str:
    """A default as it would be written in TOML."""
    if v is None:
        return "none"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (bool, int, float)):
        return _num(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + "}"
    return str(v)


_TYPE_NAMES = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean",
               "object": "table", "array": "list", "null": "none"}


def type_name(s: Schema, node: Any, depth: int = 0) -> str:
    node = s.deref(node)
    if depth > 6:
        return "any"
    if "const" in node:
        return _TYPE_NAMES.get(node.get("type"), "") or type(node["const"]).__name__
    opts = s.options(node)
    if opts is not None:
        names: list[str] = []
        for o in opts:
            n = type_name(s, o, depth + 1)
            if n not in names:
                names.append(n)
        return " or ".join(names)
    t = node.get("type")
    if isinstance(t, list):
        return " or ".join(_TYPE_NAMES.get(x, x) for x in t)
    if t == "array":
        items = node.get("items")
        if isinstance(node.get("prefixItems"), list):
            return "list [" + ", ".join(type_name(s, i, depth + 1) for i in node["prefixItems"]) + "]"
        if s.table_options(items)[0] if isinstance(items, dict) else False:
            return "list of tables"
        return f"list of {type_name(s, items, depth + 1)}" if items else "list"
    if t == "object":
        if s.is_object(node):
            return "table"
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            return f"table of {type_name(s, extra, depth + 1)}"
        return "table"
    if t == "string" and node.get("format") == "path":
        return "string (path)"
    if t is None and "enum" in node:
        kinds = sorted({_TYPE_NAMES.get(type(v).__name__.replace("str", "string").replace("int", "integer")
                                        .replace("float", "number").replace("bool", "boolean"), "value")
                        for v in node["enum"]})
        return " or ".join(kinds)
    return _TYPE_NAMES.get(t, t) if t else "any"


def constraints(s: Schema, node: Any, depth: int = 0) -> list[str]:
    """Human-readable constraints of a value schema (allowed values, bounds, lengths, pattern)."""
    node = s.deref(node)
    out: list[str] = []
    if depth > 6:
        return out
    if "const" in node:
        out.append(f"only `{toml_value(node['const'])}`")
    if isinstance(node.get("enum"), list):
        out.append("one of " + ", ".join(f"`{toml_value(v)}`" for v in node["enum"]))
    # JSON Schema keywords, and pydantic's own names, which it emits for constraints it cannot
    # express in JSON Schema (e.g. bounds applied after an AfterValidator)
    for op, keys in ((">", ("exclusiveMinimum", "gt")), (">=", ("minimum", "ge")),
                     ("<", ("exclusiveMaximum", "lt")), ("<=", ("maximum", "le"))):
        for key in keys:
            if key in node and not isinstance(node[key], bool):
                out.append(f"{op} {_num(node[key])}")
                break
    for key in ("multipleOf", "multiple_of"):
        if key in node:
            out.append(f"multiple of {_num(node[key])}")
            break
    for keys, word in ((("minLength", "min_length"), "at least {} characters"),
                       (("maxLength", "max_length"), "at most {} characters"),
                       (("minItems",), "at least {} entries"), (("maxItems",), "at most {} entries"),
                       (("minProperties",), "at least {} keys"), (("maxProperties",), "at most {} keys")):
        for key in keys:
            if key in node:
                out.append(word.format(node[key]))
                break
    if node.get("uniqueItems"):
        out.append("entries unique")
    if "pattern" in node:
        out.append(f"matches `{node['pattern']}`")
    opts = s.options(node)
    if opts is not None:
        parts = []
        for o in opts:
            inner = constraints(s, o, depth + 1)
            if inner:
                parts.append(f"{type_name(s, o, depth + 1)}: " + ", ".join(inner))
            elif s.deref(o).get("type") not in (None, "null"):
                parts.append(type_name(s, o, depth + 1))
        if any(":" in p for p in parts):
            out.append("; ".join(parts))
    if node.get("type") == "array" and isinstance(node.get("items"), dict) and not s.is_object(node["items"]):
        inner = constraints(s, node["items"], depth + 1)
        if inner:
            out.append("each entry " + ", ".join(inner))
    if node.get("type") == "object" and isinstance(node.get("additionalProperties"), dict):
        inner = constraints(s, node["additionalProperties"], depth + 1)
        if inner:
            out.append("each value " + ", ".join(inner))
    return out


def cell(text: str) -> str:
    """Table-cell safe: one line; outside code spans, pipes escaped and a ``<`` that could open an
    HTML tag written as ``&lt;`` (so that ``runs/<name>`` is not swallowed as a tag)."""
    text = re.sub(r"\s*\n\s*", " ", str(text)).strip()
    parts = re.split(r"(`+[^`]*?`+)", text)
    for i in range(0, len(parts), 2):  # (Python-Markdown's tables do not split cells inside code spans)
        parts[i] = re.sub(r"<(?=[A-Za-z/!?])", "&lt;", parts[i]).replace("|", "\\|")
    return "".join(parts)


# --------------------------------------------------------------------------- sections


class Section:
    def __init__(self, path: str, array: bool = False):
        self.path, self.array = path, array
        self.variants: list[tuple[str | None, dict]] = []
        self.description = ""

    @property
    def title(self) -> str:
        return "Top level" if not self.path else f"`[{'[' if self.array else ''}{self.path}{']' if self.array else ''}]`"

    @property
    def anchor(self) -> str:
        return "top-level" if not self.path else "section-" + re.sub(r"[^a-z0-9]+", "-", self.path.lower()).strip("-")

    def add(self, label: str | None, obj: dict) -> None:
        for other_label, other in self.variants:
            if other is obj or (json.dumps(other, sort_keys=True, default=str) == json.dumps(obj, sort_keys=True, default=str)):
                return
        self.variants.append((label, obj))


def collect(s: Schema) -> list[Section]:
    """Every section (table) of the config, top level first, in :data:`SECTION_ORDER`."""
    sections: dict[str, Section] = {}
    root = s.deref(s.root)
    top = s.object_variants(root)
    if not top:
        raise SchemaError("the experiment schema is not an object (or a union of objects) with properties")

    def visit(path: str, label: str | None, obj: dict, array: bool = False, description: str = "") -> None:
        sec = sections.get(path)
        if sec is None:
            sec = sections[path] = Section(path, array)
        if description and not sec.description:
            sec.description = description
        sec.add(label, obj)
        for key, prop in obj.get("properties", {}).items():
            sub = f"{path}.{key}" if path else key
            p = s.deref(prop)
            tables, _ = s.table_options(p)
            desc = p.get("description", "")
            if tables:
                for vl, vo in tables:
                    visit(sub, vl, vo, description=desc)
                continue
            p_nn, _ = s.strip_null(p)
            if p_nn.get("type") == "array" and isinstance(p_nn.get("items"), dict):
                for vl, vo in s.table_options(p_nn["items"])[0]:
                    visit(sub, vl, vo, array=True, description=desc)

    for label, obj in top:
        visit("", label, obj)

    def order(path: str) -> tuple:
        head = path.split(".")[0]
        rank = SECTION_ORDER.index(head) if head in SECTION_ORDER else len(SECTION_ORDER)
        return (path != "", rank, list(sections).index(path))

    return [sections[p] for p in sorted(sections, key=order)]


def rows(s: Schema, obj: dict, path: str, section_anchor: dict[str, str]) -> list[str]:
    required = set(obj.get("required", []))
    out = []
    props = obj.get("properties", {})
    # a variant's tag first (rule configs inherit ``lr`` from their base class, before ``name``)
    keys = [k for k in DISCRIMINATOR_KEYS if k in props and "const" in s.deref(props[k])]
    keys += [k for k in props if k not in keys]
    if not path:  # top level: plain keys first, then the tables in the order of the sections
        def rank(k: str) -> tuple:
            sub = section_anchor.get(k)
            return (sub is not None, SECTION_ORDER.index(k) if k in SECTION_ORDER else len(SECTION_ORDER))
        keys.sort(key=rank)
    for key in keys:
        prop = props[key]
        p = s.deref(prop)
        sub = f"{path}.{key}" if path else key
        p_nn, nullable = s.strip_null(p)
        if sub in section_anchor:
            array = p_nn.get("type") == "array"
            tables, others = s.table_options(p_nn["items"] if array else p_nn)
            link = f"[{sub}](#{section_anchor[sub]})"
            kinds = [type_name(s, o) for o in others] + [f"table ({link})"]
            typ = ("list of " if array else "") + " or ".join(kinds)
            cons = ", ".join(constraints(s, {k: v for k, v in p_nn.items() if k != "items"})) if array else ""
            if len(tables) > 1 and not others:
                cons = ", ".join(filter(None, [cons, "one of the variants of the section"]))
        else:
            typ = type_name(s, p_nn)
            cons = ", ".join(constraints(s, p_nn))
        if nullable and "none" not in typ:
            typ += " (optional)"
        if "default" in p and sub in section_anchor and _all_defaults(s, p_nn, p["default"]):
            default = "its keys' defaults"
        elif "default" in p:
            default = f"`{toml_value(p['default'])}`"
        elif key in required:
            default = "*required*"
        elif sub in section_anchor and p_nn.get("type") != "array":
            default = "its keys' defaults"  # a default_factory table: pydantic states no default
        else:
            default = "*optional*"
        desc = p.get("description") or p_nn.get("description") or ""
        out.append(f"| `{key}` | {cell(typ)} | {cell(default)} | {cell(cons)} | {cell(desc)} |")
    return out


def _all_defaults(s: Schema, node: dict, default: Any) -> bool:
    """Whether a table's default is just each of its keys at its own default (or empty)."""
    if not isinstance(default, dict):
        return False
    variants = s.object_variants(node) or []
    for _, obj in variants:
        props = obj.get("properties", {})
        if all(k in props and s.deref(props[k]).get("default", object()) == v for k, v in default.items()):
            if all(k in default or "default" in s.deref(p) for k, p in props.items()):
                return True
    return False


def render_markdown(schema: dict) -> str:
    """The config reference page (Markdown) for an experiment config's JSON Schema."""
    if not isinstance(schema, dict):
        raise SchemaError(f"expected a JSON Schema dict, got {type(schema).__name__}")
    s = Schema(schema)
    sections = collect(s)
    anchors = {sec.path: sec.anchor for sec in sections if sec.path}
    lines = [INTRO, "## Sections", ""]
    for sec in sections:
        lines.append(f"- [{sec.title}](#{sec.anchor})")
    lines.append("")
    for sec in sections:
        lines.append(f"## {sec.title} {{#{sec.anchor}}}")
        lines.append("")
        if sec.description:
            lines += [cell(sec.description), ""]
        for label, obj in sec.variants:
            if label is not None and len(sec.variants) > 1:
                lines += [f"### `{sec.path or 'config'}`: {cell(label)}", ""]
            desc = obj.get("description")
            if desc and desc != sec.description and sec.path:  # (the top level is the page's intro)
                lines += [desc.strip(), ""]
            body = rows(s, obj, sec.path, anchors)
            if not body:
                lines += ["*(no keys)*", ""]
                continue
            lines += ["| key | type | default | allowed / constraints | description |",
                      "|---|---|---|---|---|", *body, ""]
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------- the hook


def experiment_schema() -> dict:
    """Call ``neuroprobe.config.experiment_json_schema()``; every failure is one clear error."""
    try:
        import neuroprobe.config as config_pkg
    except Exception as e:  # noqa: BLE001 - any import failure is reported the same way
        raise SchemaError(f"cannot import neuroprobe.config ({type(e).__name__}: {e})") from None
    fn = getattr(config_pkg, "experiment_json_schema", None)
    if fn is None:
        raise SchemaError(f"{SCHEMA_FUNCTION}() does not exist (the typed configs must export it)")
    try:
        schema = fn()
    except Exception as e:  # noqa: BLE001
        raise SchemaError(f"{SCHEMA_FUNCTION}() raised {type(e).__name__}: {e}") from None
    if not isinstance(schema, dict) or not schema:
        raise SchemaError(f"{SCHEMA_FUNCTION}() returned {type(schema).__name__}, not a JSON Schema dict")
    return schema


def generate() -> str:
    return render_markdown(experiment_schema())


def on_files(files, config):  # mkdocs hook
    from mkdocs.exceptions import PluginError
    from mkdocs.structure.files import File

    try:
        content = generate()
    except SchemaError as e:
        raise PluginError(f"config reference ({PAGE}) cannot be generated: {e}") from None
    existing = files.get_file_from_path(PAGE)
    if existing is not None:  # a hand-written docs/config.md would go stale: the generated page wins
        files.remove(existing)
    files.append(File.generated(config, PAGE, content=content))
    return files


if __name__ == "__main__":
    print(generate(), end="")
