"""`make lab` serves the notebooks, and a tutorial runs top to bottom in JupyterLab in a real browser.

- `test_make_lab_lists_notebooks` (seconds, part of `make test`): `make lab` on a free loopback port with a random
  token; the server's contents API lists the notebooks of nbs/, offers the kernel they ask for, and refuses a request
  without the token.
- `test_tutorial_runs_in_browser` (marked `browser`, minutes, run by `make test-browser`): `make lab` on a copy of
  nbs/, a tutorial opened in headless Chromium through Playwright, its outputs cleared and all its cells run from
  JupyterLab's menus. Every code cell must have run, none may have raised, and the figures must show as images. A
  screenshot is saved in the test's temporary folder; nbs/ is unchanged afterwards.

Environment: `CHROMIUM` (default /usr/bin/chromium), `SSL_MAE_BROWSER_NB` (the notebook to run, relative to nbs/).
"""
import hashlib, json, os, re, secrets, shlex, shutil, signal, socket, subprocess, sys, time
import urllib.error, urllib.request
from contextlib import contextmanager
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'
CHROMIUM = os.environ.get('CHROMIUM', '/usr/bin/chromium')
# the faster of the two tutorials with figures (reconstruction grids, error maps, training curves): 93 s in
# nbdev-test against 260 s for tutorial 2 on 2 busy cores; tutorial 3 has no figure
TUTORIAL = os.environ.get('SSL_MAE_BROWSER_NB', 'tutorials/01_pretrain.ipynb')
# without these, Chromium's background connections are refused on a closed network and it may not start
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                 '--disable-background-networking', '--disable-component-update', '--disable-sync']
RUN_TIMEOUT_S = 1800  # all cells of the tutorial, on a busy 2-core machine

needs_make = pytest.mark.skipif(shutil.which('make') is None, reason='`make lab` needs make')

def free_port() -> int:
    "A TCP port that is free on the loopback interface now."
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]

def api(url:str, # the server's base URL
        path:str, # e.g. 'api/contents/tutorials'
        token:str|None, # the server's token; None sends none
        method:str='GET'):
    "The Jupyter server's JSON answer to `method path`."
    headers = {'Authorization': f'token {token}'} if token else {}
    with urllib.request.urlopen(urllib.request.Request(f'{url}/{path}', method=method, headers=headers),
                                timeout=10) as r:
        body = r.read()
    return json.loads(body) if body else None

def lab_command(**make_vars) -> tuple[dict, list]:
    "The command `make lab` runs with `make_vars` set, as (environment variables it sets, argv)."
    cmd = ['make', '-s', '-n', '-o', '.venv/.installed', 'lab', *(f'{k}={v}' for k, v in make_vars.items())]
    out = subprocess.run(cmd, cwd=ROOT, env=without_make_flags(os.environ), capture_output=True, text=True,
                         check=True).stdout
    words = shlex.split(out.replace('\\\n', ' '))
    n_env = next(i for i, w in enumerate(words) if not re.fullmatch(r'[A-Z_]+=.*', w))
    return dict(w.split('=', 1) for w in words[:n_env]), words[n_env:]

def without_make_flags(env) -> dict:
    "`env` without the variables by which a calling make (`make test`) steers a nested one."
    return {k: v for k, v in env.items() if k not in ('MAKEFLAGS', 'MAKELEVEL', 'MFLAGS')}

def interrupt(signum, frame): raise KeyboardInterrupt(f"signal {signum}")

@contextmanager
def make_lab(tmp:Path, # scratch folder: Jupyter's settings, workspaces and runtime files, and the server's log
             lab_dir:Path|None=None): # what the server serves; default: the Makefile's (nbs/)
    "Run `make lab`'s command on a free loopback port with a random token; yield `(url, token)`; stop it after."
    port, token = free_port(), secrets.token_hex(16)
    make_env, argv = lab_command(BIN=Path(sys.executable).parent, IP='127.0.0.1', PORT=port, TOKEN=token,
                                 NO_BROWSER='--no-browser', LAB_ARGS='--ServerApp.port_retries=0',
                                 **({'LAB_DIR': lab_dir} if lab_dir else {}))
    jupyter = {'JUPYTER_CONFIG_DIR': 'config', 'JUPYTER_RUNTIME_DIR': 'runtime',
               'JUPYTERLAB_SETTINGS_DIR': 'settings', 'JUPYTERLAB_WORKSPACES_DIR': 'workspaces'}
    env = {**without_make_flags(os.environ), **make_env,
           **{k: str(tmp/'jupyter'/d) for k, d in jupyter.items()}}  # the user's own Jupyter setup stays out
    news = tmp/'jupyter'/'settings'/'@jupyterlab'/'apputils-extension'/'notification.jupyterlab-settings'
    news.parent.mkdir(parents=True)  # no news toast over the screenshot, no request to the news feed
    news.write_text(json.dumps({'fetchNews': 'false', 'checkForUpdates': False}))
    log = tmp/'lab.log'
    with open(log, 'w') as out:  # run directly (not under make) so that stopping it can wait for it
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    url = f'http://127.0.0.1:{port}'
    on_term = signal.signal(signal.SIGTERM, interrupt)  # a test run stopped by SIGTERM still stops the server
    try:
        end = time.monotonic() + 120
        while True:
            if proc.poll() is not None: pytest.fail(f"`make lab` exited ({proc.returncode}):\n{log.read_text()}")
            if time.monotonic() > end: pytest.fail(f"`make lab` did not answer on {url} in 120 s:\n{log.read_text()}")
            try:
                api(url, 'api/status', token)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError): time.sleep(0.3)
        yield url, token
    finally:
        try:  # kernels run in their own sessions: shut them down through the server before stopping it
            for k in api(url, 'api/kernels', token): api(url, f"api/kernels/{k['id']}", token, method='DELETE')
        except (urllib.error.URLError, ConnectionError, TimeoutError): pass
        try: os.killpg(proc.pid, signal.SIGTERM)  # the server shuts down its kernels and exits
        except ProcessLookupError: pass
        try: proc.wait(30)
        except subprocess.TimeoutExpired: pass
        try: os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of it
        except ProcessLookupError: pass
        proc.wait()
        signal.signal(signal.SIGTERM, on_term)

def digest(folder:Path) -> dict:
    "SHA-256 of every file under `folder`, by relative path."
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob('*')) if p.is_file()}

def notebook_names(folder:Path) -> set: return {p.name for p in folder.glob('*.ipynb')}

@needs_make
def test_make_lab_lists_notebooks(tmp_path):
    before = digest(NBS)
    with make_lab(tmp_path) as (url, token):
        top, tutorials = api(url, 'api/contents', token), api(url, 'api/contents/tutorials', token)
        specs = api(url, 'api/kernelspecs', token)
        with pytest.raises(urllib.error.HTTPError) as refused: api(url, 'api/contents', None)
    assert {c['name'] for c in top['content'] if c['type'] == 'notebook'} == notebook_names(NBS)
    assert {c['name'] for c in tutorials['content'] if c['type'] == 'notebook'} == notebook_names(NBS/'tutorials')
    asked = {json.loads(p.read_text())['metadata']['kernelspec']['name'] for p in NBS.rglob('*.ipynb')}
    assert asked <= set(specs['kernelspecs']), f"notebooks ask for kernels {asked}, the server has {specs}"
    assert refused.value.code == 403
    assert digest(NBS) == before

# The open notebook's state, read from the page: its kernel's status (toolbar and status bar), input prompts ('[3]:'
# once run, '[*]:' while queued), tracebacks shown, images decoded, and the text of a dialog (as 'Kernel Restarting'
# when the kernel died) if one is open. The toolbar says 'idle' before the kernel has
# started; the status bar says 'No Kernel | Initializing' then. textContent, not innerText: JupyterLab does not lay
# out cells scrolled out of view.
STATE = """() => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  if (!panel) return null;
  const all = sel => [...panel.querySelectorAll(sel)];
  const bar = [...document.querySelectorAll('.jp-StatusBar-TextItem')].map(e => e.textContent)
              .find(t => t.includes(' | '));
  return {
    idle: panel.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status === 'idle'
          && /^(?!No Kernel).* \\| Idle$/.test(bar || ''),
    prompts: all('.jp-CodeCell .jp-InputPrompt').map(e => e.textContent.trim()),
    outputs: all('.jp-OutputArea-output').length,
    tracebacks: all('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
                .map(e => e.textContent).filter(t => t.includes('Traceback')),
    images: all('.jp-OutputArea-output img').filter(e => e.complete && e.naturalWidth > 0).length,
    dialog: document.querySelector('.jp-Dialog')?.textContent ?? null,
  };
}"""
RAN = r'/^\[\d+\]:$/'

def menu(page, top:str, label:str):
    "Click `label` in JupyterLab's menu `top`, as a user would."
    page.locator('.lm-MenuBar-itemLabel').get_by_text(top, exact=True).click()
    page.locator('.lm-Menu-item:not(.lm-mod-disabled) .lm-Menu-itemLabel').get_by_text(label, exact=True).click()

@pytest.mark.browser
@needs_make
def test_tutorial_runs_in_browser(tmp_path):
    try: from playwright.sync_api import sync_playwright
    except ImportError: pytest.fail("Playwright is not installed: `make test-browser` installs it (extra `browser`)")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"no Chromium at {CHROMIUM}: `make test-browser` installs Debian's chromium, or set CHROMIUM")
    nb = json.loads((NBS/TUTORIAL).read_text())
    n_code = sum(c['cell_type'] == 'code' for c in nb['cells'])
    n_saved_images = sum('image/png' in o.get('data', {}) for c in nb['cells'] for o in c.get('outputs', []))
    before = digest(NBS)
    copy = tmp_path/'nbs'  # JupyterLab autosaves and checkpoints what it runs: never in nbs/
    shutil.copytree(NBS, copy, ignore=shutil.ignore_patterns('.ipynb_checkpoints'))
    shot = tmp_path/'tutorial.png'
    with make_lab(tmp_path, copy) as (url, token), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={'width': 1400, 'height': 1000})
        try:
            page.goto(f'{url}/lab/tree/{TUTORIAL}?token={token}')
            page.wait_for_function(f"""() => {{ const s = ({STATE})();
                return s && s.idle && s.prompts.length === {n_code}; }}""", timeout=120_000)
            page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell').first.click()  # the notebook has focus
            if page.evaluate(STATE)['outputs']:  # the saved figures must not count (the command needs outputs)
                menu(page, 'Edit', 'Clear Outputs of All Cells')
            page.wait_for_function(f"""() => {{ const s = ({STATE})();
                return s.outputs === 0 && !s.prompts.some(p => {RAN}.test(p)); }}""")
            t0 = time.monotonic()
            menu(page, 'Run', 'Run All Cells')
            page.wait_for_function(f"() => ({STATE})().prompts.some(p => p === '[*]:' || {RAN}.test(p))")
            # done when no cell is queued and the kernel is idle, or a dialog opened; after an error or a kernel
            # restart the cells left are '[ ]:' again, and the checks below name them
            page.wait_for_function(f"""() => {{ const s = ({STATE})();
                return s.dialog !== null || (s.idle && !s.prompts.includes('[*]:')); }}""",
                timeout=RUN_TIMEOUT_S * 1000, polling=1000)
            print(f"{TUTORIAL}: the run ended after {time.monotonic() - t0:.0f} s in JupyterLab; screenshot {shot}")
            state = page.evaluate(STATE)
            if state['images']:  # a figure in the screenshot
                img = page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output img').last
                img.scroll_into_view_if_needed()
                img.wait_for(state='visible')
                page.wait_for_timeout(1000)
        finally:
            page.screenshot(path=shot)
            browser.close()
    assert state['dialog'] is None, f"JupyterLab said, running {TUTORIAL}: {state['dialog']}"
    assert not state['tracebacks'], f"a cell of {TUTORIAL} raised:\n{state['tracebacks'][0][-3000:]}"
    not_run = [i for i, p in enumerate(state['prompts']) if not re.fullmatch(r'\[\d+\]:', p)]
    assert not not_run, f"code cells {not_run} of {TUTORIAL} did not run: {state['prompts']}"
    assert state['images'] >= max(1, n_saved_images), \
        f"{state['images']} images shown in JupyterLab, {n_saved_images} in the saved notebook (see {shot})"
    assert shot.stat().st_size > 0
    assert digest(NBS) == before
