"""nsprim as an OCI runtime: ``nsprim-runtime``, runc's command line over an
OCI bundle (``config.json`` + rootfs), for podman, containerd and dockerd.

- :mod:`nsprim.oci.config`: the runtime-spec's config.json (1.0-1.2) to
  :class:`nsprim.spec.ContainerSpec` and back, every field checked first;
- :mod:`nsprim.oci.state`: the runtime's state directory (stdlib only, so
  ``state``, ``kill`` and ``delete`` start fast);
- :mod:`nsprim.oci.cli`: the command line; :mod:`nsprim.oci.create` the
  commands that spawn (create, run, exec), imported only by them.
"""

from __future__ import annotations

OCI_VERSION = "1.2.0"
