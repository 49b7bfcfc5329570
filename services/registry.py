"""The one registry of model services: each name in `shared.settings.SERVICE_PORTS` is the package
`services/<name>/`, whose `app` module holds its `SPEC` (a `shared.service_app.ServiceSpec`).

A spec is imported when it is first asked for, not when this module is: each service module imports its model
libraries (torch, diffusers, transformers, llama.cpp), which a web process that only calls the services over
HTTP never needs.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from shared.service_app import ServiceSpec
from shared.settings import SERVICE_PORTS

SERVICE_NAMES: tuple[str, ...] = tuple(SERVICE_PORTS)


class ServiceRegistry(Mapping[str, ServiceSpec]):
    """Service name → its spec, imported on first use."""

    def __getitem__(self, name: str) -> ServiceSpec:
        if name not in SERVICE_PORTS:
            raise KeyError(f"No model service is called {name!r}; the services are {', '.join(SERVICE_NAMES)}.")
        spec = importlib.import_module(f"services.{name}.app").SPEC
        if not isinstance(spec, ServiceSpec) or spec.name != name:
            raise TypeError(f"services.{name}.app.SPEC must be the ServiceSpec named {name!r}.")
        return spec

    def __iter__(self) -> Iterator[str]:
        return iter(SERVICE_NAMES)

    def __len__(self) -> int:
        return len(SERVICE_NAMES)


SERVICES = ServiceRegistry()
