"""The rehearsal: the program's recorded Docker resources created for real on a local engine.

- `dockerd.sh`: starts the local Docker engine when none answers (idempotent).
- `standin_images.py`: stand-in images, tagged with the program's exact image names, built
  offline from a tiny root filesystem plus the host's binaries bind-mounted read-only.
- `docker_api.py`: the one mapping from recorded pulumi-docker inputs to the Docker Engine API,
  and `up` / `destroy` / `cleanup` on top of it.
"""
