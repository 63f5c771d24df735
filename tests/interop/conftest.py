"""Shared set-up: stubs generated from proto/admin.proto, the Rust binaries, and
admin servers written with grpcio (an independent gRPC implementation)."""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug"
SCALAR_ADMIN = os.environ.get("SCALAR_ADMIN_BIN", str(TARGET / "scalar-admin"))
POD_FLEET = os.environ.get("POD_FLEET_BIN", str(TARGET / "pod-fleet"))


def _generate_stubs():
    out = tempfile.mkdtemp(prefix="admin-stubs-")
    include = Path(protoc.__file__).parent / "_proto"
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{ROOT / 'proto'}",
            f"-I{include}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            str(ROOT / "proto" / "admin.proto"),
        ]
    )
    assert code == 0, "protoc failed"
    sys.path.insert(0, out)


_generate_stubs()
import admin_pb2  # noqa: E402
import admin_pb2_grpc  # noqa: E402
from google.protobuf import empty_pb2  # noqa: E402


class PythonPod(admin_pb2_grpc.AdminServicer):
    """An admin server with the servers' behaviour, written with grpcio."""

    def __init__(self, fail_pause=None):
        self.fail_pause = fail_pause
        self.paused = False
        self.in_flight = 0
        self.calls = []
        self.lock = threading.Condition()

    def Pause(self, request, context):
        has_max = request.HasField("max_pause_wait_time")
        self.calls.append(
            ("Pause", request.wait_outstanding, request.max_pause_wait_time if has_max else None)
        )
        if self.fail_pause:
            code, message = self.fail_pause
            context.abort(code, message)
        with self.lock:
            self.paused = True
            if request.wait_outstanding:
                limit = (request.max_pause_wait_time or 30000) / 1000
                if not self.lock.wait_for(lambda: self.in_flight == 0, timeout=limit):
                    self.paused = False
                    context.abort(grpc.StatusCode.FAILED_PRECONDITION, "requests still in flight")
        return empty_pb2.Empty()

    def Unpause(self, request, context):
        self.calls.append(("Unpause",))
        with self.lock:
            self.paused = False
        return empty_pb2.Empty()

    def CheckPaused(self, request, context):
        self.calls.append(("CheckPaused",))
        return admin_pb2.CheckPausedResponse(paused=self.paused)


class PythonPods:
    def __init__(self, pods):
        self.pods = pods
        self.servers = []
        self.ports = []
        for pod in pods:
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
            admin_pb2_grpc.add_AdminServicer_to_server(pod, server)
            self.ports.append(server.add_insecure_port("127.0.0.1:0"))
            server.start()
            self.servers.append(server)

    def addresses(self):
        return ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def stop(self):
        for server in self.servers:
            server.stop(grace=None)


@pytest.fixture
def python_pods():
    started = []

    def start(*pods):
        group = PythonPods(list(pods))
        started.append(group)
        return group

    yield start
    for group in started:
        group.stop()


def scalar_admin(*args, timeout=60):
    """Runs the Rust binary; returns (exit status, stdout, stderr)."""
    done = subprocess.run(
        [SCALAR_ADMIN, *args], capture_output=True, text=True, timeout=timeout
    )
    return done.returncode, done.stdout, done.stderr


@pytest.fixture
def rust_fleet():
    """Pods served by the Rust server module (the pod-fleet binary); pod 1 holds a
    request in flight that never finishes, so it cannot drain."""
    process = subprocess.Popen(
        [POD_FLEET, "--pods", "2", "--busy", "1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    hello = json.loads(process.stdout.readline())
    yield hello["pods"]
    process.stdin.close()
    process.wait(timeout=10)
