"""export/web/ in headless Chromium: LiteRT.js's ms per token on a `.tflite`.

    python bench/web_page.py --tflite=artifacts/gpt2-medium.int8.tflite
    python bench/web_page.py            # a tiny random GPT-2, exported here

Needs Debian's chromium and chromedriver, selenium, and `npm ci` in
export/web (what .ci/run installs). Greedy, an 8-token prompt, --new_tokens
new tokens; ms/token counts from the first new token to the last (the
page's own clock), the first token's wait reported apart. Single-threaded
wasm unless --threads (the page is served cross-origin isolated either way).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("tflite", None, "The .tflite to run (default: a tiny random GPT-2).")
flags.DEFINE_integer("new_tokens", 32, "New greedy tokens per run.")
flags.DEFINE_integer("repeats", 3, "Timed runs (median), after a warm-up one.")

PROMPT = "The meaning of life is a question that"


def tiny_tflite(directory):
    from tfgpt2 import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel.from_config(GPT2Config(n_layer=2, n_embd=64, n_head=4,
                                                   n_positions=256), seed=0)
    return model.export(os.path.join(directory, "tiny.tflite"), format="litert",
                        quantization="none", verbose=False)


def main(argv):
    del argv
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    web = os.path.join(ROOT, "export", "web")
    spec = importlib.util.spec_from_file_location("serve", os.path.join(web, "serve.py"))
    serve = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(serve)
    with tempfile.TemporaryDirectory() as tmp:
        path = FLAGS.tflite or tiny_tflite(tmp)
        size = os.path.getsize(path) / 1e6
        httpd = serve.server(0, model=path)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium")
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
            options.add_argument(argument)
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
        driver.set_script_timeout(1800)
        try:
            start = time.perf_counter()
            driver.get(f"http://127.0.0.1:{httpd.server_address[1]}/index.html")
            script = ("const done = arguments[arguments.length - 1];"
                      "window.tfgpt2.ready.then(() => done('ok'), (e) => done(String(e)));")
            assert driver.execute_async_script(script) == "ok"
            loaded = time.perf_counter() - start
            run = ("const done = arguments[arguments.length - 1];"
                   "window.tfgpt2.run(arguments[0], {maxNewTokens: arguments[1], doSample: false})"
                   ".then((r) => done(JSON.stringify(r)), (e) => done(JSON.stringify({e: String(e)})));")
            results = [json.loads(driver.execute_async_script(run, PROMPT, FLAGS.new_tokens))
                       for _ in range(FLAGS.repeats + 1)]
        finally:
            driver.quit()
            httpd.shutdown()
    if "e" in results[0]:
        raise SystemExit(results[0]["e"])
    timed = sorted(r["msPerToken"] for r in results[1:])
    print(f"\nLiteRT.js (wasm, 1 thread) in headless Chromium, {os.path.basename(path)} "
          f"({size:.0f} MB), greedy, {FLAGS.new_tokens} new tokens, median of {FLAGS.repeats}; "
          f"load {os.getloadavg()[0]:.2f}\n")
    print("| model | page load + compile (s) | ms/token | tok/s |")
    print("|---|---:|---:|---:|")
    median = timed[len(timed) // 2]
    print(f"| {os.path.basename(path)} | {loaded:.1f} | {median:.1f} | {1000 / median:.1f} |")


if __name__ == "__main__":
    app.run(main)
