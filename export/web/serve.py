"""Serve this page locally: python3 serve.py [--port 8000] [--model FILE.tflite]

A static server (the standard library's) that adds the two headers which
make the page cross-origin isolated, so LiteRT.js may use wasm threads, and
serves --model as /model.tflite (the page's default model URL)."""

import argparse
import functools
import http.server
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent


class Handler(http.server.SimpleHTTPRequestHandler):
    model = None

    def translate_path(self, path):
        if self.model and path.split("?")[0] == "/model.tflite":
            return str(self.model)
        return super().translate_path(path)

    def end_headers(self):
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()

    def log_message(self, *args):
        pass


def server(port: int = 8000, model: str | os.PathLike | None = None,
           host: str = "127.0.0.1") -> http.server.ThreadingHTTPServer:
    handler = type("PageHandler", (Handler,), {"model": Path(model).resolve() if model else None})
    return http.server.ThreadingHTTPServer((host, port),
                                           functools.partial(handler, directory=str(HERE)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model", help="the .tflite to serve as /model.tflite")
    args = parser.parse_args()
    if not (HERE / "node_modules" / "@litertjs" / "core").is_dir():
        raise SystemExit(f"LiteRT.js is not installed: run `npm ci` in {HERE} first.")
    httpd = server(args.port, args.model)
    print(f"Serving http://127.0.0.1:{args.port}/ (Ctrl-C to stop)")
    httpd.serve_forever()
