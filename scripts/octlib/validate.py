"""Config and constitution checks that run before any job: JSON Schema with defaults, and errors that name
the file and the field."""

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
    """Validate (and fill defaults into) instance; raise InputError naming source and every bad field."""
    with open(schema_path, encoding="utf-8") as f:
        schema = yaml.safe_load(f)
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{source}: field '{field(e.absolute_path)}': {e.message}" for e in errors]
        raise InputError("\n".join(lines))
    return instance


def field(path):
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def load_yaml(path):
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not valid YAML: {e}") from None
