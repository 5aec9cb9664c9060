"""Resource values that survive a partial override at launch.

Dagster treats the values a resource is constructed with as one default for its whole config:
a run that sets one field (the launchpad, ``--config``, a schedule's run config) gets the class
defaults for every other field, so ``LAIONLAB_CLIP_MODEL`` or ``LAIONLAB_ALLOWED_FILE_ROOTS``
would silently stop applying. ``with_launch_defaults`` makes the values the *field* defaults of
a subclass instead: a run's config then overrides exactly the fields it names.
"""

from __future__ import annotations

from typing import TypeVar

from dagster import ConfigurableResource
from pydantic import create_model
from pydantic.fields import FieldInfo

R = TypeVar("R", bound=ConfigurableResource)


def with_launch_defaults(resource: R) -> R:
    """An instance of a subclass of ``type(resource)`` (same name, same field constraints)
    whose field defaults are ``resource``'s values."""
    cls = type(resource)
    fields = {
        name: (info.annotation, FieldInfo.merge_field_infos(info, default=getattr(resource, name)))
        for name, info in cls.model_fields.items()
    }
    return create_model(cls.__name__, __base__=cls, __module__=cls.__module__, __doc__=cls.__doc__, **fields)()
