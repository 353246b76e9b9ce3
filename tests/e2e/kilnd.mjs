// Starts the real kilnd for a browser test: a fresh store directory, a free port,
// optional token auth (a tokens file with the SHA-256 of each token), the web root
// of this source tree, and `env`: more KILN_* settings. Ready when /readyz answers 200.
// restart() stops it (SIGTERM, or the signal named) and starts it again on the same
// port and store (a server restart, or a crash, under an open page).
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export async function startKilnd({ tokens = null, webRoot, env: extra = {} } = {}) {
  const bin = process.env.KILND;
  if (!bin) throw new Error('KILND (the path of the built kilnd) is not set');
  const dir = mkdtempSync(join(tmpdir(), 'kiln-e2e-'));
  const port = await freePort();
  // kilnd treats every KILN_* variable as configuration and refuses unknown ones:
  // pass none of the caller's, only these.
  const env = {
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KILN_'))),
    KILN_STORE_PATH: join(dir, 'store'),
    KILN_SERVER_LISTEN: `127.0.0.1:${port}`,
    KILN_SERVER_WEB_ROOT: webRoot || process.env.E2E_WEB_ROOT,
    KILN_LOG_TARGET: 'stderr',
    KILN_AUTH_REQUIRED: tokens ? 'true' : 'false',
    ...extra,
  };
  if (tokens) {
    const file = join(dir, 'tokens');
    writeFileSync(file, tokens.map((t) => `${t.name} ${t.tenant} ${t.role} ${createHash('sha256').update(t.token).digest('hex')}\n`).join(''));
    env.KILN_AUTH_TOKENS_FILE = file;
  }
  const url = `http://127.0.0.1:${port}`;
  let proc, log = '';
  const launch = async () => {
    proc = spawn(bin, [], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    proc.stderr.on('data', (d) => {
      log += d;
    });
    const exited = once(proc, 'exit').then(([code, sig]) => {
      throw new Error(`kilnd exited early (${code ?? sig}):\n${log}`);
    });
    exited.catch(() => {});
    // Ready = /readyz answers 200; each attempt is a real request, bounded by a deadline.
    const deadline = Date.now() + 20000;
    for (;;) {
      const attempt = fetch(`${url}/readyz`).then((r) => r.status === 200, () => false);
      if (await Promise.race([attempt, exited])) break;
      if (Date.now() > deadline) throw new Error(`kilnd did not become ready:\n${log}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const halt = async (signal = 'SIGTERM') => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill(signal);
      await once(proc, 'exit');
    }
  };
  await launch();
  return {
    url,
    port,
    log: () => log,
    async restart({ signal = 'SIGTERM' } = {}) {
      await halt(signal);
      await launch();
    },
    async stop() {
      await halt();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
