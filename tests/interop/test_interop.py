"""The Rust client and server against grpcio, an independent gRPC implementation:
every call and every error status must round-trip."""

import json

import grpc
import pytest

from conftest import PythonPod, admin_pb2, admin_pb2_grpc, empty_pb2, scalar_admin

CODES = [c for c in grpc.StatusCode if c != grpc.StatusCode.OK]


def test_pause_check_unpause_python_pods(python_pods):
    pods = [PythonPod(), PythonPod(), PythonPod()]
    group = python_pods(*pods)
    status, out, err = scalar_admin("-c", "pause", "-a", group.addresses())
    assert status == 0, err
    assert "Pause completed at " in out
    assert all(p.paused for p in pods)
    # The probe, then Pause with the field absent, as the Java client sends it.
    assert all(p.calls == [("CheckPaused",), ("Pause", True, None)] for p in pods)

    status, out, err = scalar_admin("-c", "check_paused", "-a", group.addresses())
    assert status == 0, err
    assert json.loads(out) == {f"127.0.0.1:{port}": "true" for port in group.ports}

    status, out, err = scalar_admin("-c", "unpause", "-a", group.addresses())
    assert status == 0, err
    assert "Unpause started at " in out
    assert not any(p.paused for p in pods)


def test_pause_fields_round_trip(python_pods):
    pod = PythonPod()
    group = python_pods(pod)
    assert scalar_admin("-c", "pause", "-a", group.addresses(), "-n", "-m", "1234")[0] == 0
    # Paused by the run before: refused unless taken over.
    assert scalar_admin("-c", "pause", "-a", group.addresses(), "-m", "0")[0] == 1
    assert scalar_admin("-c", "pause", "-a", group.addresses(), "-m", "0", "--force")[0] == 0
    pauses = [c for c in pod.calls if c[0] == "Pause"]
    # Zero means the pods' default and is not sent: ScalarDL rejects 0, ScalarDB reads
    # it as unset, so both then wait their default.
    assert pauses == [("Pause", False, 1234), ("Pause", True, None)]


@pytest.mark.parametrize("code", CODES, ids=[c.name for c in CODES])
def test_every_status_round_trips_and_rolls_back(python_pods, code):
    healthy = [PythonPod(), PythonPod()]
    failing = PythonPod(fail_pause=(code, "python says no"))
    group = python_pods(*healthy, failing)
    status, out, err = scalar_admin("-c", "pause", "-a", group.addresses())
    assert status == 1, err
    assert f"127.0.0.1:{group.ports[2]}: {code.name}: python says no" in err
    assert "no pod is left paused" in err
    assert not any(p.paused for p in healthy)
    # Unpaused, then confirmed with CheckPaused (again while a pod whose Pause failed
    # with an unknown outcome is watched).
    for p in healthy + [failing]:
        after = p.calls[p.calls.index(("Pause", True, None)) + 1 :]
        assert after[0] == ("Unpause",), p.calls
        assert len(after) >= 2 and all(c == ("CheckPaused",) for c in after[1:]), p.calls


def test_drain_limit_round_trips(python_pods):
    busy = PythonPod()
    busy.in_flight = 1
    group = python_pods(PythonPod(), busy)
    status, out, err = scalar_admin("-c", "pause", "-a", group.addresses(), "-m", "200")
    assert status == 1
    assert f"127.0.0.1:{group.ports[1]}: FAILED_PRECONDITION: requests still in flight" in err


def test_grpcio_client_against_the_rust_server(rust_fleet):
    idle, busy = rust_fleet
    with grpc.insecure_channel(idle) as channel:
        admin = admin_pb2_grpc.AdminStub(channel)
        admin.Pause(admin_pb2.PauseRequest(wait_outstanding=True), timeout=10)
        assert admin.CheckPaused(empty_pb2.Empty(), timeout=10).paused
        admin.Unpause(empty_pb2.Empty(), timeout=10)
        assert not admin.CheckPaused(empty_pb2.Empty(), timeout=10).paused
        admin.Pause(admin_pb2.PauseRequest(wait_outstanding=False), timeout=10)
        assert admin.CheckPaused(empty_pb2.Empty(), timeout=10).paused
        admin.Unpause(empty_pb2.Empty(), timeout=10)

    with grpc.insecure_channel(busy) as channel:
        admin = admin_pb2_grpc.AdminStub(channel)
        with pytest.raises(grpc.RpcError) as failure:
            admin.Pause(
                admin_pb2.PauseRequest(wait_outstanding=True, max_pause_wait_time=100), timeout=10
            )
        assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "were not drained" in failure.value.details()
        # ScalarDL's reason travels as grpc-status-details-bin.
        details = dict(failure.value.trailing_metadata()).get("grpc-status-details-bin")
        assert details is not None and b"TIMED_OUT" in details
        # The server reopened its gate.
        assert not admin.CheckPaused(empty_pb2.Empty(), timeout=10).paused
        # Without waiting, a busy server pauses at once.
        admin.Pause(admin_pb2.PauseRequest(wait_outstanding=False), timeout=10)
        assert admin.CheckPaused(empty_pb2.Empty(), timeout=10).paused
        admin.Unpause(empty_pb2.Empty(), timeout=10)
