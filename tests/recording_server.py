"""A local HTTP server that records requests and answers like the KFP / Vertex REST APIs."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class RecordingServer:
    def __init__(self):
        self.requests: list[dict] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                recorder.requests.append({"method": self.command, "path": self.path,
                                          "body": json.loads(body) if body else None})
                payload = json.dumps(recorder.reply(self.command, self.path)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @staticmethod
    def reply(method: str, path: str) -> dict:
        if "pipelineJobs" in path:  # Vertex AI: create pipeline job
            project, location = re.search(r"projects/([^/]+)/locations/([^/]+)", path).groups()
            return {"name": f"projects/{project}/locations/{location}/pipelineJobs/job-1",
                    "state": "PIPELINE_STATE_PENDING"}
        if path.startswith("/storage/v1/b/"):  # Cloud Storage: the pipeline root's bucket exists
            return {"name": path.split("/")[4].split("?")[0]}
        if path.startswith("/apis/v2beta1/experiments"):
            return {"experiment_id": "experiment-1", "display_name": "movielens"} \
                if method == "POST" else {}
        if path.startswith("/apis/v2beta1/runs"):
            return {"run_id": "run-1", "display_name": "movielens-recommender"}
        return {}

    def close(self):
        self._server.shutdown()
