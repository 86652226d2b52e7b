"""A real Clarifai gRPC peer on loopback that records PatchPipelineVersionRuns calls and answers
GetPipelineVersionRun with the statuses a test scripts.

It speaks the same protocol as api.clarifai.com for that one method, so the client under test
runs unmodified over a plaintext channel to ``peer.base``.
"""

from __future__ import annotations

import threading
from concurrent import futures
from typing import Any

import grpc
from clarifai_grpc.grpc.api import resources_pb2, service_pb2, service_pb2_grpc
from clarifai_grpc.grpc.api.status import status_code_pb2, status_pb2

MODES = ("success", "failure", "grpc_error", "stall")


class ClarifaiPeer(service_pb2_grpc.V2Servicer):
    """A V2 servicer answering PatchPipelineVersionRuns according to ``mode``.

    Modes: ``success`` (status SUCCESS, runs echoed), ``failure`` (Clarifai status
    ``failure_code``/``failure_description``/``failure_details``), ``grpc_error`` (abort with
    ``grpc_code``/``grpc_details``), ``stall`` (answer nothing until ``stop()`` or 30 s).
    ``fail_times = N`` makes the next N calls abort with ``fail_code`` (UNAVAILABLE by default)
    before the mode applies. Note that ClarifaiChannel's service config retries UNAVAILABLE
    itself (up to 5 attempts), so each of those attempts is one recorded call here.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        self._release = threading.Event()
        self.port = 0
        self.requests: list[service_pb2.PatchPipelineVersionRunsRequest] = []
        self.metadata: list[dict[str, str]] = []
        #: Seconds each call had left before its client's deadline when it arrived (None: none).
        self.deadlines: list[float | None] = []
        self.gets: list[service_pb2.GetPipelineVersionRunRequest] = []
        self.reset()

    def reset(self) -> None:
        """Release stalled calls, forget recorded ones and go back to answering SUCCESS."""
        self._release.set()  # wakes every call waiting now; later stalls wait again
        self._release.clear()
        with self._lock:
            self.requests.clear()
            self.metadata.clear()
            self.deadlines.clear()
            self.gets.clear()
        #: Statuses GetPipelineVersionRun answers, one a call; the last one is kept.
        self.run_statuses: list[str] = ["JOB_RUNNING"]
        self.mode = "success"
        self.failure_code: int = status_code_pb2.CONN_DOES_NOT_EXIST
        self.failure_description = "Resource does not exist"
        self.failure_details = ""
        self.grpc_code = grpc.StatusCode.INTERNAL
        self.grpc_details = "peer error"
        self.fail_times = 0
        self.fail_code = grpc.StatusCode.UNAVAILABLE
        self.stall_seconds = 30.0

    @property
    def mode(self) -> str:
        """How the next calls are answered: one of ``MODES``."""
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ValueError(f"unknown peer mode {value!r}; known: {', '.join(MODES)}")
        self._mode = value

    @property
    def base(self) -> str:
        """The CLARIFAI_API_BASE that reaches this peer."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ClarifaiPeer:
        """Listen on a free loopback port; returns self."""
        self._release.clear()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        service_pb2_grpc.add_V2Servicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        return self

    def stop(self) -> None:
        """Release stalled calls and shut the server down."""
        self._release.set()
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None

    def PatchPipelineVersionRuns(
        self, request: service_pb2.PatchPipelineVersionRunsRequest, context: grpc.ServicerContext
    ) -> service_pb2.MultiPipelineVersionRunResponse:
        """Record the call, then answer as the current mode says."""
        with self._lock:
            self.requests.append(request)
            self.metadata.append({key: value for key, value in context.invocation_metadata()})
            self.deadlines.append(context.time_remaining())
            failing = self.fail_times > 0
            if failing:
                self.fail_times -= 1
        if failing:
            context.abort(self.fail_code, "peer is failing on purpose")
        return self._answer(request, context)

    def _answer(self, request: Any, context: grpc.ServicerContext) -> Any:
        if self.mode == "failure":
            return service_pb2.MultiPipelineVersionRunResponse(
                status=status_pb2.Status(
                    code=self.failure_code,
                    description=self.failure_description,
                    details=self.failure_details,
                )
            )
        if self.mode == "grpc_error":
            context.abort(self.grpc_code, self.grpc_details)
        if self.mode == "stall":
            self._release.wait(self.stall_seconds)
        return service_pb2.MultiPipelineVersionRunResponse(
            status=status_pb2.Status(code=status_code_pb2.SUCCESS, description="Ok"),
            pipeline_version_runs=list(request.pipeline_version_runs),
        )

    def GetPipelineVersionRun(
        self, request: service_pb2.GetPipelineVersionRunRequest, context: grpc.ServicerContext
    ) -> service_pb2.SinglePipelineVersionRunResponse:
        """Record the call and answer the next scripted status (the failure modes apply)."""
        with self._lock:
            self.gets.append(request)
            self.metadata.append({key: value for key, value in context.invocation_metadata()})
            name = self.run_statuses.pop(0) if len(self.run_statuses) > 1 else self.run_statuses[0]
        if self.mode == "failure":
            return service_pb2.SinglePipelineVersionRunResponse(
                status=status_pb2.Status(
                    code=self.failure_code, description=self.failure_description
                )
            )
        if self.mode == "grpc_error":
            context.abort(self.grpc_code, self.grpc_details)
        return service_pb2.SinglePipelineVersionRunResponse(
            status=status_pb2.Status(code=status_code_pb2.SUCCESS, description="Ok"),
            pipeline_version_run=resources_pb2.PipelineVersionRun(
                id=request.pipeline_version_run_id,
                orchestration_status=resources_pb2.OrchestrationStatus(
                    status=status_pb2.Status(
                        code=status_code_pb2.StatusCode.Value(name), description=name.lower()
                    )
                ),
            ),
        )
