"""Stand-in for NVIDIA's dcgm-exporter (no GPU here): /metrics on :9400 with the default counters for one GPU, in the
exporter's names and labels (gpu, UUID, device, modelName, Hostname). Framebuffer in MiB."""

from __future__ import annotations

import os
import socket
import sys

from .server import HttpError, Reply, Request, serve, text_reply

PORT = 9400
GPU = {"gpu": "0", "UUID": "GPU-00000000-0000-0000-0000-standin00000", "device": "nvidia0", "modelName": "NVIDIA H200"}
# An 80 GiB card with a few GiB in use; a test may set the used MiB.
USED_MIB = int(os.environ.get("STANDIN_FB_USED_MIB", "4096"))
TOTAL_MIB = 81920
GAUGES = {
    "DCGM_FI_DEV_FB_USED": USED_MIB,
    "DCGM_FI_DEV_FB_FREE": TOTAL_MIB - USED_MIB,
    "DCGM_FI_DEV_GPU_UTIL": 3,
    "DCGM_FI_DEV_GPU_TEMP": 41,
    "DCGM_FI_DEV_POWER_USAGE": 92.5,
    "DCGM_FI_DEV_MEM_COPY_UTIL": 1,
}


class DcgmApp:
    name = "dcgm-exporter"

    def handle(self, request: Request) -> Reply:
        if request.path != "/metrics":
            raise HttpError(404, {"detail": "Not Found"})
        labels = ",".join(f'{k}="{v}"' for k, v in {**GPU, "Hostname": socket.gethostname()}.items())
        lines = []
        for name, value in GAUGES.items():
            lines += [f"# HELP {name} stand-in", f"# TYPE {name} gauge", f"{name}{{{labels}}} {value}"]
        return text_reply("\n".join(lines) + "\n", content_type="text/plain; version=0.0.4; charset=utf-8")


if __name__ == "__main__":
    serve(DcgmApp(), "0.0.0.0", PORT)
    sys.exit(0)
