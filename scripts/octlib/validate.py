"""Config and constitution checks that run before any job: JSON Schema with defaults, a YAML loader that refuses
duplicate keys, and errors that name the file and the field."""

import difflib
import re

import jsonschema
import yaml


class InputError(Exception):
    pass


def _with_defaults(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(name, sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def check(instance, schema_path, source):
    """Validate (and fill defaults into) instance; raise InputError naming every bad field and its file.

    source: the file's name, or a function of a field's path (a list of keys) that names the file it is in."""
    with open(schema_path, encoding="utf-8") as f:
        schema = yaml.safe_load(f)
    name_of = source if callable(source) else (lambda path: source)
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    lines = []
    for e in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path)):
        path = list(e.absolute_path)
        if e.validator in ("additionalProperties", "unevaluatedProperties") and isinstance(e.instance, dict):
            allowed = property_names(schema, e.schema)
            # a known key is "unevaluated" only because its block failed another check, reported on its own
            for key in (k for k in unexpected(e.message) if k not in allowed):
                near = difflib.get_close_matches(key, allowed, n=1)
                hint = f"; did you mean {near[0]!r}?" if near else f"; known keys: {', '.join(sorted(allowed))}"
                lines.append(f"{name_of(path + [key])}: field '{field(path + [key])}': unknown key{hint}")
        elif e.validator == "oneOf" and all(list(sub) == ["required"] for sub in e.validator_value):
            kinds = [sub["required"][0] for sub in e.validator_value]
            found = [k for k in kinds if k in e.instance]
            lines.append(
                f"{name_of(path)}: field '{field(path)}': exactly one of {', '.join(kinds)}, not "
                f"{' and '.join(found) or 'none'} (`{found[0] if found else kinds[0]}: null` unsets a key of an earlier file)"
            )
        else:
            lines.append(f"{name_of(path)}: field '{field(path)}': {e.message}")
    if lines:
        raise InputError("\n".join(dict.fromkeys(lines)))
    return instance


def unexpected(message):
    """The keys named in jsonschema's "('a', 'b' were unexpected)"."""
    match = re.search(r"\((.*) (?:was|were) unexpected\)", message)
    return re.findall(r"'((?:[^'\\]|\\.)*)'", match.group(1)) if match else []


def resolve(root, node):
    """A schema node with its local $ref followed and its allOf subschemas' properties folded in."""
    while "$ref" in node:
        target = root
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    for sub in node.get("allOf", []):
        sub = resolve(root, sub)
        node = {**sub, **node, "properties": {**sub.get("properties", {}), **node.get("properties", {})}}
    return node


def property_names(root, node):
    """The keys a schema node allows, through $ref and allOf."""
    return sorted(resolve(root, node).get("properties", {}))


def field(path):
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


class _StrictLoader(yaml.SafeLoader):
    pass


def _mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (the last one would silently win)", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_yaml(path):
    """A YAML file, refusing duplicate keys; InputError naming the file (and line) when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.load(f, Loader=_StrictLoader)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not valid YAML: {e}") from None
