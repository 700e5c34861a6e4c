"""Image specs: the frozen values of SPEC.md section 2 (what an image is, never how it is built).

One module per job; this package re-exports their public names, so
``from pylxcore.spec import Image`` is the way in:

- ``validate``  one validator per rule for user-supplied fields (env, paths, labels, user, cmd)
- ``names``     image references (``name[:tag]``) and container names
- ``sizes``     sizes in bytes: ``parse_size``, and the one exact and one human spelling
- ``context``   the build context: where a copy source really is
- ``limits``    ``Limits``, resource limits, and the memory_swap rule
- ``mount``     ``Mount``, a bind mount
- ``healthcheck`` ``Healthcheck``, Docker's HEALTHCHECK of an image
- ``layer``     ``Layer``, one build step
- ``image``     ``Image``, a base, layers and container defaults
- ``yaml``      the YAML form, read with file:line:key errors and written back

It imports only the standard library, attrs and (on first YAML use) PyYAML,
so a spec can be checked on a machine without LXC. Every mistake raises
:class:`~pylxcore.errors.SpecError` whose ``key`` is the path of the bad
value (``layers[2].copy.src``, ``limits.memory``) and, for YAML, whose
``path`` and ``line`` point at the offending node.
"""

from __future__ import annotations

from pylxcore.spec import validate
from pylxcore.spec.context import resolve_copy_source
from pylxcore.spec.healthcheck import Healthcheck
from pylxcore.spec.image import Image
from pylxcore.spec.layer import Layer
from pylxcore.spec.limits import Limits
from pylxcore.spec.mount import Mount
from pylxcore.spec.names import split_image_ref, validate_container_name, validate_image_ref
from pylxcore.spec.sizes import parse_size

__all__ = [
    "Healthcheck",
    "Image",
    "Layer",
    "Limits",
    "Mount",
    "parse_size",
    "resolve_copy_source",
    "split_image_ref",
    "validate",
    "validate_container_name",
    "validate_image_ref",
]
