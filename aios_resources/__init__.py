"""Dagster resources: where configuration meets the pure code. One resource per external system."""

from aios_resources.resources import (
    DocumentStoreResource,
    InboxResource,
    ModelRegistryResource,
    PayoutResource,
    PolicyResource,
    StoresResource,
    build_resources,
)

__all__ = ["DocumentStoreResource", "InboxResource", "ModelRegistryResource", "PayoutResource",
           "PolicyResource", "StoresResource", "build_resources"]
