"""CRM adapters from configuration: the `[[crm.adapters]]` types and building them in order.

`type` is "builtin", a short name of an adapter shipped with callbridge ("odoo", ...), a name
registered with `register_adapter_type`, or "module:Class".
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from bridge.call_log.store import CallLogStore
from crm_adapters.builtin import BuiltinCrm
from crm_adapters.contract import CrmAdapter
from crm_adapters.settings import AdapterConfig, CrmSettings

AdapterFactory = Callable[[AdapterConfig, CrmSettings, CallLogStore], CrmAdapter]
ADAPTER_TYPES: dict[str, AdapterFactory] = {}


def register_adapter_type(name: str, factory: AdapterFactory) -> None:
    """Make `type = name` usable in `[[crm.adapters]]`."""
    ADAPTER_TYPES[name] = factory


def _builtin(config: AdapterConfig, settings: CrmSettings, store: CallLogStore) -> CrmAdapter:
    return BuiltinCrm(store, name=config.display_name, default_region=settings.default_region,
                      **config.options)


register_adapter_type("builtin", _builtin)

# Short names for the adapters shipped with callbridge (`type = "odoo"` in [[crm.adapters]]).
SHIPPED_ADAPTERS = {
    "http_json": "crm_adapters.http_json:HttpJsonAdapter",
    "odoo": "crm_adapters.odoo:OdooAdapter",
    "bitrix24": "crm_adapters.bitrix24:Bitrix24Adapter",
}


def build_adapters(settings: CrmSettings, store: CallLogStore) -> list[CrmAdapter]:
    """The enabled adapters, in order. `module:Class` types get `Class.from_config(config, settings,
    store)` if the class has it, else `Class(**options)`."""
    adapters: list[CrmAdapter] = []
    for config in settings.adapters:
        if not config.enabled:
            continue
        kind = SHIPPED_ADAPTERS.get(config.type, config.type)
        if kind in ADAPTER_TYPES:
            adapter = ADAPTER_TYPES[kind](config, settings, store)
        elif ":" in kind:
            module, _, attr = kind.partition(":")
            cls = getattr(importlib.import_module(module), attr)
            adapter = (cls.from_config(config, settings, store) if hasattr(cls, "from_config")
                       else cls(**config.options))
        else:
            known = ", ".join(sorted({*ADAPTER_TYPES, *SHIPPED_ADAPTERS}))
            raise ValueError(f"unknown CRM adapter type {config.type!r} (known: {known}, or module:Class)")
        adapter.name = config.display_name
        adapters.append(adapter)
    return adapters
