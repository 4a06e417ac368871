// Shared machinery of the end-to-end suite (tests/e2e/*.test.mjs): builds and starts the demo
// (examples/demo.rs) with a config file of our own, starts the oidc-provider test IdP
// (tests/interop/oidc-provider.mjs), launches Debian's headless Chromium through
// playwright-core, and kills every child process at the end, also when a test fails.
//
// Every wait is bounded: readiness is polled with a deadline, never slept on.
//
// Environment:
//   JIT_E2E_CARGO_ARGS   extra arguments for `cargo build --example demo` (scripts/test passes
//                        the feature flags of its `cargo test`, so nothing is rebuilt)
//   JIT_E2E_CHROMIUM     the browser (default /usr/bin/chromium)

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const ARTIFACTS = join(ROOT, 'tests/artifacts');
export const CHROMIUM = process.env.JIT_E2E_CHROMIUM || '/usr/bin/chromium';

const BUILD_TIMEOUT_MS = 20 * 60_000;
const READY_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 5_000;

// ---------------------------------------------------------------------------------------------
// Child processes: every one is tracked, and killed when this process ends in any way.
// ---------------------------------------------------------------------------------------------

const children = new Set();
const scratchDirs = new Set();

function cleanUpNow() {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  for (const dir of scratchDirs) rmSync(dir, { recursive: true, force: true });
}

process.on('exit', cleanUpNow);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(signal, () => {
    cleanUpNow();
    process.exit(128 + ({ SIGHUP: 1, SIGINT: 2, SIGTERM: 15 })[signal]);
  });
}

/** A spawned child whose output is kept (for failure messages) and which is always killed. */
export class Proc {
  constructor(name, command, args, options = {}) {
    this.name = name;
    this.output = '';
    this.stdout = '';
    this.child = spawn(command, args, { ...options, stdio: ['pipe', 'pipe', 'pipe'] });
    children.add(this.child);
    this.exited = new Promise((resolveExit) => {
      this.child.once('exit', (code, signal) => {
        children.delete(this.child);
        resolveExit({ code, signal });
      });
      this.child.once('error', (err) => {
        this.output += `\n[spawn error: ${err.message}]\n`;
        children.delete(this.child);
        resolveExit({ code: null, signal: null, error: err });
      });
    });
    this.lineWaiters = [];
    let partial = '';
    this.child.stdout.setEncoding('utf8');
    this.child.stderr.setEncoding('utf8');
    this.child.stdout.on('data', (chunk) => {
      this.output += chunk;
      this.stdout += chunk;
      partial += chunk;
      const lines = partial.split('\n');
      partial = lines.pop();
      for (const line of lines) {
        for (const waiter of [...this.lineWaiters]) waiter(line);
      }
    });
    this.child.stderr.on('data', (chunk) => {
      this.output += chunk;
    });
  }

  get running() {
    return this.child.exitCode === null && this.child.signalCode === null && children.has(this.child);
  }

  /** The first stdout line matching `regex` (its match), failing at the deadline or exit. */
  waitForLine(regex, timeoutMs) {
    return new Promise((resolveLine, reject) => {
      const done = (fn, value) => {
        clearTimeout(timer);
        this.lineWaiters = this.lineWaiters.filter((w) => w !== onLine);
        fn(value);
      };
      const onLine = (line) => {
        const match = line.match(regex);
        if (match) done(resolveLine, match);
      };
      const timer = setTimeout(
        () => done(reject, new Error(`${this.name}: no line matching ${regex} within ${timeoutMs} ms\n${this.describe()}`)),
        timeoutMs,
      );
      this.lineWaiters.push(onLine);
      this.exited.then(({ code, signal }) =>
        done(reject, new Error(`${this.name} exited (code ${code}, signal ${signal}) before printing ${regex}\n${this.describe()}`)));
      // Complete lines printed before this call (the last piece may be a partial line).
      const earlier = this.stdout.split('\n');
      earlier.pop();
      for (const line of earlier) onLine(line);
    });
  }

  /** `signal`, then SIGKILL after a grace period; resolves once the process is gone. */
  async stop(signal = 'SIGTERM') {
    if (!this.running) return this.exited;
    this.child.kill(signal);
    let timer;
    const late = new Promise((r) => {
      timer = setTimeout(r, STOP_GRACE_MS, 'late');
    });
    if ((await Promise.race([this.exited, late])) === 'late') {
      this.child.kill('SIGKILL');
    }
    clearTimeout(timer);
    return this.exited;
  }

  describe() {
    return `---- ${this.name} output ----\n${this.output.trimEnd()}\n---- end of ${this.name} output ----`;
  }

  saveLog(file) {
    mkdirSync(ARTIFACTS, { recursive: true });
    writeFileSync(join(ARTIFACTS, file), this.output);
  }
}

/** Runs a command to its end (bounded), failing with its output on a non-zero exit. */
async function run(name, command, args, options, timeoutMs) {
  const proc = new Proc(name, command, args, options);
  proc.child.stdin.end();
  let timer;
  const timeout = new Promise((r) => {
    timer = setTimeout(r, timeoutMs, 'timeout');
  });
  const outcome = await Promise.race([proc.exited, timeout]);
  clearTimeout(timer);
  if (outcome === 'timeout') {
    await proc.stop('SIGKILL');
    throw new Error(`${name} did not finish within ${timeoutMs / 1000} s\n${proc.describe()}`);
  }
  if (outcome.code !== 0) {
    throw new Error(`${name} failed (code ${outcome.code}, signal ${outcome.signal})\n${proc.describe()}`);
  }
  return proc.output;
}

// ---------------------------------------------------------------------------------------------
// Ports, scratch directories, polling
// ---------------------------------------------------------------------------------------------

/** A port that was free a moment ago on 127.0.0.1. */
export function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

/** A fresh temporary directory, removed by `cleanup()`. */
export function scratchDir(label) {
  const dir = mkdtempSync(join(tmpdir(), `jit-e2e-${label}-`));
  scratchDirs.add(dir);
  const cleanup = () => {
    scratchDirs.delete(dir);
    rmSync(dir, { recursive: true, force: true });
  };
  return { dir, path: (name) => join(dir, name), cleanup };
}

/** Calls `probe` until it returns a truthy value, at most `timeoutMs`; `what` names it. */
export async function poll(what, timeoutMs, probe, intervalMs = 100) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) {
      throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (last error: ${last.message})` : ''}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** A TOML basic string (JSON's escapes are TOML's). */
export const tomlString = (s) => JSON.stringify(String(s));

// ---------------------------------------------------------------------------------------------
// The demo
// ---------------------------------------------------------------------------------------------

let demoBinary;

/** Builds examples/demo.rs once per test file (a no-op when cargo is up to date). */
export async function buildDemo() {
  if (demoBinary) return demoBinary;
  const extra = (process.env.JIT_E2E_CARGO_ARGS ?? '').split(/\s+/).filter(Boolean);
  const output = await run(
    'cargo build --example demo',
    'cargo',
    ['build', '--example', 'demo', '--message-format=json-render-diagnostics', ...extra],
    { cwd: ROOT, env: { ...process.env, CARGO_TERM_COLOR: 'never' } },
    BUILD_TIMEOUT_MS,
  );
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue;
    let message;
    try {
      message = JSON.parse(line);
    } catch {
      continue;
    }
    if (message.reason === 'compiler-artifact' && message.target?.name === 'demo'
      && message.target.kind.includes('example') && message.executable) {
      demoBinary = message.executable;
    }
  }
  assert.ok(demoBinary && existsSync(demoBinary), `cargo built no demo executable:\n${output}`);
  return demoBinary;
}

/**
 * Starts the demo binary with `--config FILE --listen 127.0.0.1:PORT`, `config` being the TOML
 * text (it must name the same port in `public_url` and `[demo] listen`). Resolves once `GET /`
 * answers 200, with `{ base, devIdp, proc, stop }`; `devIdp` is the development IdP's issuer
 * as the demo prints it (when `[demo] dev_idp = true`).
 */
export async function startDemo({ name, port, config, dir }) {
  const binary = await buildDemo();
  const configFile = join(dir, `${name.replace(/[^A-Za-z0-9_]+/g, '-')}.toml`);
  writeFileSync(configFile, config);
  const proc = new Proc(name, binary, ['--config', configFile, '--listen', `127.0.0.1:${port}`], {
    cwd: dir,
    env: { ...process.env, NO_COLOR: '1', RUST_LOG: process.env.RUST_LOG || 'warn,jit_provision=info,demo=info' },
  });
  const base = `http://127.0.0.1:${port}`;
  try {
    // Bounded readiness: the banner line, then an HTTP answer from the app itself.
    const [, listening] = await proc.waitForLine(/^\s*listening on\s+(\S+)/, READY_TIMEOUT_MS);
    assert.equal(listening, `127.0.0.1:${port}`, 'the demo listens where we told it to');
    await poll(`${name}: GET ${base}/ answering 200`, READY_TIMEOUT_MS, async () => {
      if (!proc.running) throw new Error(`${name} exited\n${proc.describe()}`);
      const res = await fetch(`${base}/`, { signal: AbortSignal.timeout(2_000) });
      await res.arrayBuffer();
      return res.status === 200;
    });
  } catch (err) {
    await proc.stop('SIGKILL');
    throw err;
  }
  const devIdp = proc.stdout.match(/^\s*dev IdP\s+(http:\/\/\S+)/m)?.[1];
  // SIGINT: the demo's graceful shutdown (it checkpoints SQLite), SIGKILL after a grace period.
  return { base, devIdp, proc, stop: () => proc.stop('SIGINT') };
}

// ---------------------------------------------------------------------------------------------
// The oidc-provider test IdP (tests/interop)
// ---------------------------------------------------------------------------------------------

const INTEROP = join(ROOT, 'tests/interop');

/**
 * Starts tests/interop/oidc-provider.mjs for one client; `accounts` is `{ login: claims }`.
 * Resolves with `{ issuer, proc, setAccounts, stop }` once it printed `READY <port>`.
 */
export async function startOidcProvider({
  dir, clientId, clientSecret, redirectUris, accounts, postLogoutRedirectUris = [], backchannelLogoutUri = '',
}) {
  assert.ok(
    existsSync(join(INTEROP, 'node_modules/oidc-provider/package.json')),
    'tests/interop/node_modules/oidc-provider is missing: run `npm ci --prefix tests/interop` '
      + '(scripts/test does)',
  );
  const accountsFile = join(dir, 'accounts.json');
  const setAccounts = (value) => {
    writeFileSync(`${accountsFile}.tmp`, JSON.stringify(value, null, 2));
    renameSync(`${accountsFile}.tmp`, accountsFile);
  };
  setAccounts(accounts);
  const proc = new Proc('oidc-provider', process.execPath, [join(INTEROP, 'oidc-provider.mjs'), '0'], {
    cwd: INTEROP,
    env: {
      ...process.env,
      OP_CLIENT_ID: clientId,
      OP_CLIENT_SECRET: clientSecret,
      OP_REDIRECT_URIS: redirectUris.join(' '),
      OP_ACCOUNTS_FILE: accountsFile,
      OP_POST_LOGOUT_REDIRECT_URIS: postLogoutRedirectUris.join(' '),
      OP_BACKCHANNEL_LOGOUT_URI: backchannelLogoutUri,
    },
  });
  let port;
  try {
    [, port] = await proc.waitForLine(/^READY (\d+)$/, READY_TIMEOUT_MS);
  } catch (err) {
    await proc.stop('SIGKILL');
    throw err;
  }
  return {
    issuer: `http://127.0.0.1:${port}`,
    proc,
    setAccounts,
    // The script exits when its stdin closes, and on SIGTERM.
    stop: () => {
      proc.child.stdin.end();
      return proc.stop('SIGTERM');
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The browser
// ---------------------------------------------------------------------------------------------

/** Debian's Chromium, headless, with a fresh temporary profile (playwright's default). */
export async function launchBrowser() {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium`);
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 60_000,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      // Names never resolve: the pages under test reach 127.0.0.1 only (oidc-provider's
      // pages @import a web font, which then fails at once instead of going out).
      '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
    ],
  });
}

/** A fresh browser context (its own cookie jar) with bounded default timeouts. */
export async function newContext(browser) {
  const context = await browser.newContext({ viewport: { width: 900, height: 700 }, deviceScaleFactor: 1 });
  context.setDefaultTimeout(15_000);
  context.setDefaultNavigationTimeout(20_000);
  return context;
}

// ---------------------------------------------------------------------------------------------
// Page helpers
// ---------------------------------------------------------------------------------------------

/** The `<th>` → `<td>` rows of every table of the page (the demo's profile page). */
export async function tableRows(page) {
  const pairs = await page.locator('tr').evaluateAll((rows) =>
    rows.map((tr) => [tr.querySelector('th')?.textContent?.trim(), tr.querySelector('td')?.textContent?.trim()]));
  return Object.fromEntries(pairs);
}

/** The cookies of the jar for host 127.0.0.1 (any path, any port: cookies ignore ports). */
export async function loopbackCookies(context) {
  return (await context.cookies()).filter((c) => c.domain === '127.0.0.1');
}

/**
 * Records the requests the page makes to `urlPrefix` (redirect hops included), so a test can
 * check how the IdP came back: `method`, the `Cookie` header sent, the response status.
 */
export function recordRequests(page, urlPrefix) {
  const seen = [];
  page.on('request', (request) => {
    if (request.url().startsWith(urlPrefix)) seen.push(request);
  });
  return seen;
}

/** Saves a screenshot under tests/artifacts (git-ignored); returns its path. */
export async function screenshot(page, file) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, file);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/** Copies a file to a path of the repository (creating its directory). */
export function copyInto(from, repoPath) {
  const to = join(ROOT, repoPath);
  mkdirSync(dirname(to), { recursive: true });
  copyFileSync(from, to);
  return to;
}

/**
 * Runs `body`; on failure, adds what helps to find out why: a screenshot of the page (under
 * tests/artifacts) and the output of the given processes.
 */
export async function withDiagnostics(label, page, procs, body) {
  try {
    return await body();
  } catch (err) {
    const notes = [];
    if (page && !page.isClosed()) {
      try {
        notes.push(`page URL: ${page.url()}`);
        const text = await page.locator('body').innerText({ timeout: 2_000 }).catch(() => '');
        if (text) notes.push(`page text: ${text.slice(0, 600)}`);
        notes.push(`screenshot: ${await screenshot(page, `failure-${label}.png`)}`);
      } catch (shotErr) {
        notes.push(`(no screenshot: ${shotErr.message})`);
      }
    }
    for (const proc of procs.filter(Boolean)) notes.push(proc.describe());
    err.message = `${err.message}\n\n${notes.join('\n')}`;
    throw err;
  }
}
