"""Provider entry point: serves llmstack's components to Pulumi programs in any language (`pulumi package add <repo>/components`)."""

import importlib
import importlib.util
import inspect
import json
import sys
from enum import Enum
from pathlib import Path
from types import ModuleType
from typing import Any, Optional

PACKAGE_DIR = Path(__file__).resolve().parent
# Pulumi's Python host runs `venv/bin/python <this directory> <engine address>`, which puts this directory
# first on sys.path; `redis.py` or `litellm.py` here would then shadow the real packages of those names.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != PACKAGE_DIR]

import pulumi  # noqa: E402
from pulumi.provider import main as serve  # noqa: E402
from pulumi.provider.experimental.analyzer import PropertyDefinition  # noqa: E402
from pulumi.provider.experimental.component import ComponentProvider  # noqa: E402
from pulumi.provider.experimental.schema import generate_schema  # noqa: E402

# The package of every type token (`llmstack:index:<ClassName>`); SDKs are generated under this name.
PROVIDER_NAME = "llmstack"
# The name pip installs this directory under (pyproject.toml); the provider loads it under the same name.
PACKAGE_NAME = "llmstack_components"


def load_package() -> ModuleType:
    """This directory as a package: the package this module belongs to, else `llmstack_components` loaded from here."""
    if __package__:
        return importlib.import_module(__package__)
    # Run as a bare directory there is no parent package, and the components' relative imports need one.
    spec = importlib.util.spec_from_file_location(
        PACKAGE_NAME, PACKAGE_DIR / "__init__.py", submodule_search_locations=[str(PACKAGE_DIR)]
    )
    assert spec is not None and spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE_NAME] = package
    spec.loader.exec_module(package)
    return package


def served_components(package: ModuleType) -> dict[str, str]:
    """Module -> the component it serves: each public ComponentResource of a module that takes typed `args`.

    The analyzer derives each schema from the typed args and outputs; a base class such as
    EngineServer takes no args and is not served on its own."""
    served = {}
    for name in package.__all__:
        value = getattr(package, name)
        if (
            isinstance(value, type)
            and issubclass(value, pulumi.ComponentResource)
            and "args" in inspect.get_annotations(value.__init__)
        ):
            served[value.__module__.rsplit(".", 1)[-1]] = name
    return dict(sorted(served.items()))


def component_classes(package: ModuleType) -> list[type[pulumi.ComponentResource]]:
    """The served components, each taken from its own module."""
    return [
        getattr(importlib.import_module(f"{package.__name__}.{module}"), name)
        for module, name in served_components(package).items()
    ]


def _holds_named_type(prop: Optional[PropertyDefinition]) -> bool:
    if prop is None:
        return False
    return bool(prop.ref) or _holds_named_type(prop.items) or _holds_named_type(prop.additional_properties)


class LlmstackProvider(ComponentProvider):
    """Pulumi's component provider, also renaming the fields of named types inside lists, maps and Outputs.

    The stock provider (pulumi 3.272) renames schema names to Python names only in plain values and
    Python names to schema names only in a top-level named type (pulumi/pulumi#18882). So without this,
    `modelEntries` would reach a TypeScript or Go program as `model_name`/`api_base`, and entries sent to
    LiteLLMProxy.models as an Output (anything depending on another resource) would keep `modelName`.

    It also documents outputs declared on a base class (EngineServer's `apiBase`, ...): the analyzer
    reads property docstrings from the component's own class body only.
    """

    def __init__(
        self,
        components: list[type[pulumi.ComponentResource]],
        name: str,
        namespace: Optional[str] = None,
        version: str = "0.0.0",
    ) -> None:
        super().__init__(components, name, namespace, version)
        for component in components:
            definition = self._component_defs[component.__name__]
            for schema_name, prop in definition.outputs.items():
                attribute = definition.outputs_mapping[schema_name]
                for base in component.__mro__[1:]:
                    if prop.description or base is pulumi.ComponentResource:
                        break
                    prop.description = self.analyzer.get_docstring(base, attribute)
        # The base class built the schema before the descriptions above were found.
        self.schema = json.dumps(
            generate_schema(name, version, namespace, self._component_defs, self._type_defs, self._dependencies).to_json()
        )

    def map_input_properties(
        self,
        inputs: Any,
        properties: dict[str, PropertyDefinition],
        mapping: dict[str, str],
        component_name: str,
        property_path: str,
    ) -> Any:
        if isinstance(inputs, pulumi.Output):
            # A named type (or a list item of one) that arrived as an Output.
            return inputs.apply(
                lambda resolved: self.map_input_properties(resolved, properties, mapping, component_name, property_path)
            )
        if not isinstance(inputs, dict):
            return super().map_input_properties(inputs, properties, mapping, component_name, property_path)
        deferred = {
            name: value
            for name, value in inputs.items()
            if isinstance(value, pulumi.Output) and _holds_named_type(properties.get(name))
        }
        mapped = dict(
            super().map_input_properties(
                {name: value for name, value in inputs.items() if name not in deferred},
                {name: prop for name, prop in properties.items() if name not in deferred},
                mapping,
                component_name,
                property_path,
            )
        )
        for name, value in deferred.items():
            mapped[mapping[name]] = value.apply(
                lambda resolved, name=name: self._map_resolved_input(  # type: ignore[misc]
                    resolved, name, properties[name], mapping[name], component_name, property_path
                )
            )
        return mapped

    def _map_resolved_input(
        self, value: Any, name: str, prop: PropertyDefinition, py_name: str, component_name: str, property_path: str
    ) -> Any:
        # The stock mapping of one property, now that its value is no longer an Output.
        return self.map_input_properties({name: value}, {name: prop}, {name: py_name}, component_name, property_path).get(
            py_name
        )

    def get_state(self, instance: pulumi.ComponentResource, component_def: Any) -> dict[str, Any]:
        state = super().get_state(instance, component_def)
        for name, prop in component_def.outputs.items():
            if name in state and _holds_named_type(prop):
                state[name] = self._schema_named(getattr(instance, component_def.outputs_mapping[name]), prop)
        return state

    def _schema_named(self, value: Any, prop: PropertyDefinition) -> Any:
        """An output value with the fields of its named types under their schema names, at any depth."""
        if isinstance(value, pulumi.Output):
            return value.apply(lambda resolved: self._schema_named(resolved, prop))
        if value is None:
            return None
        if prop.ref:
            type_def = self.get_type_definition(prop)
            if type_def is None:
                return value
            if type_def.enum:
                return value.value if isinstance(value, Enum) else value
            fields = {}
            for schema_name, field in type_def.properties.items():
                field_value = value.get(type_def.properties_mapping[schema_name])
                if field_value is not None:
                    fields[schema_name] = self._schema_named(field_value, field)
            return fields
        if prop.items is not None and isinstance(value, list):
            return [self._schema_named(item, prop.items) for item in value]
        if prop.additional_properties is not None and isinstance(value, dict):
            return {key: self._schema_named(item, prop.additional_properties) for key, item in value.items()}
        return value


def main() -> None:
    """Serves the components: what `component_provider_host` does, with the provider above."""
    provider = LlmstackProvider(component_classes(load_package()), PROVIDER_NAME)
    # The engine address and flags follow the plugin's path on the command line.
    serve(provider, sys.argv[1:])


if __name__ == "__main__":
    main()
