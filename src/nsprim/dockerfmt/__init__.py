"""docker's output shapes, one source for the CLI and the Docker API daemon.

- :mod:`nsprim.dockerfmt.shapes`: pure functions from nsprim's records
  (the :class:`~nsprim.spec.ContainerSpec`, the lifecycle state, the image
  store's config) to the JSON of docker's Engine API (container inspect and
  summary, image inspect and summary, volume, network) and to the rows the
  docker CLI formats (``ps``, ``images``, ``volume ls``, ``network ls``);
- :mod:`nsprim.dockerfmt.load`: the same objects read from a state root;
- :mod:`nsprim.dockerfmt.gotemplate`: Go's ``text/template`` with docker's
  functions, for ``--format``.

Nothing heavy is imported here: ``nsprim ps`` starts fast.
"""
