"""export/web/: the browser page, in headless Chromium (Debian's chromium
and chromedriver, driven by selenium), loading the exported `.tflite` with
LiteRT.js from npm. Its text must equal the Python LiteRT runner's on the
same file, greedy and seeded, and its tokenizer tiktoken's ids.

`.ci/run` installs Chromium, chromedriver and the page's npm packages and
sets TFGPT2_BROWSER_TESTS=required, so there a missing piece fails; on
another machine these tests are skipped with what to install."""

import importlib.util
import json
import os
import shutil
import threading
from pathlib import Path

import pytest

import tokenizer_support as support
from conftest import ROOT
from tfgpt2.export.litert_runner import LiteRTRunner

pytestmark = pytest.mark.slow

WEB = Path(ROOT) / "export" / "web"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
MISSING = [what for what, ok in (
    ("chromium and chromium-driver (apt-get install chromium chromium-driver)",
     CHROMIUM and DRIVER),
    (f"LiteRT.js (npm ci in {WEB})", (WEB / "node_modules" / "@litertjs" / "core").is_dir()),
    ("selenium (the test extra)", importlib.util.find_spec("selenium"))) if not ok]
if MISSING:
    if os.environ.get("TFGPT2_BROWSER_TESTS") == "required":
        raise RuntimeError(f"The browser tests need {'; '.join(MISSING)}.")
    pytest.skip(f"needs {'; '.join(MISSING)}", allow_module_level=True)

PROMPTS = ["Hello, I'm a language model,", "Ünïcode ☃ → 日本語\nand a new line 🙂",
           # ~120 tokens: the new ones cross from decode_128 to the whole cache.
           "Counting: " + " ".join(str(i) for i in range(60))]


def _serve_module():
    spec = importlib.util.spec_from_file_location("tfgpt2_web_serve", WEB / "serve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def page_tflite(tmp_path_factory):
    """A small GPT-2 (the real vocabulary) whose cache is long enough for a
    decode window (decode_128), so the page crosses from one to the next."""
    from tfgpt2 import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel.from_config(GPT2Config(n_layer=2, n_embd=64, n_head=4,
                                                   n_positions=160), seed=3)
    for block in model.blocks:  # louder blocks: greedy text that depends on the context
        block.mlp.c_proj.kernel.assign(block.mlp.c_proj.kernel.numpy() * 60.0)
    return model.export(tmp_path_factory.mktemp("page") / "page.tflite", format="litert",
                        quantization="none", verbose=False)


@pytest.fixture(scope="module")
def page(page_tflite):
    """A browser on the page, the model served as /model.tflite."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    httpd = _serve_module().server(0, model=page_tflite)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_script_timeout(300)
    try:
        driver.get(f"http://127.0.0.1:{httpd.server_address[1]}/index.html")
        yield driver
    finally:
        driver.quit()
        httpd.shutdown()


def in_page(driver, body: str, *args):
    """Run async JS `body` (it sees `tfgpt2`, `args`) once the model is
    loaded; returns its JSON result, or fails with the page's error."""
    script = ("const done = arguments[arguments.length - 1];"
              "const args = Array.from(arguments).slice(0, -1);"
              "window.tfgpt2.ready.then(async () => { const tfgpt2 = window.tfgpt2; "
              + body + " }).then((r) => done(JSON.stringify({ok: r})),"
              " (e) => done(JSON.stringify({error: String(e && e.stack || e)})));")
    result = json.loads(driver.execute_async_script(script, *args))
    if "error" in result:
        logs = [entry["message"] for entry in driver.get_log("browser")]
        pytest.fail(f"{result['error']}\nbrowser console: {logs[-10:]}")
    return result["ok"]


@pytest.fixture(scope="module")
def runner(page_tflite):
    return LiteRTRunner(page_tflite, num_threads=1)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_text_equals_the_python_runner(page, runner, prompt):
    got = in_page(page, "return tfgpt2.run(args[0], {maxNewTokens: 16, doSample: false});",
                  prompt)
    want = runner.generate(prompt, max_new_tokens=16, do_sample=False)
    assert got["text"] == want
    assert page.find_element("id", "output").text.replace("\n", "") == want.replace("\n", "")


def test_seeded_sampling_equals_the_python_runner(page, runner):
    options = {"maxNewTokens": 12, "topK": 40, "topP": 0.9, "temperature": 0.8, "seed": 5}
    got = in_page(page, "return tfgpt2.run(args[0], args[1]);", PROMPTS[0], options)
    want = runner.generate(PROMPTS[0], max_new_tokens=12, top_k=40, top_p=0.9,
                           temperature=0.8, seed=5)
    assert got["text"] == want


def test_tokenize_in_the_page_gives_tiktoken_ids(page):
    texts = support.MULTILINGUAL[:3] + support.EMOJI[:1] + [
        "Hello world<|endoftext|>It's  a test\n\n  of   \xa0 tabs\tand 'LL 42x", ""]
    got = in_page(page, "const out = []; for (const t of args[0]) "
                        "out.push(await tfgpt2.model.tokenize(t)); return out;", texts)
    enc = support.tiktoken_gpt2()
    assert got == [enc.encode(t, allowed_special="all") for t in texts]
    back = in_page(page, "return tfgpt2.model.detokenize(args[0]);", got[0])
    assert back == texts[0]


def test_bad_settings_are_a_clear_error_in_the_page(page):
    message = in_page(page, "try { await tfgpt2.run('hi', {maxNewTokens: 2, topP: 0}); "
                            "return 'no error'; } catch (e) { return String(e); }")
    assert "topP in (0, 1]" in message
