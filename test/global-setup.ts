// Runs once before the tests (jest.config.js globalSetup): the slow test keys are made here, with
// no test's timeout running, and kept in .cache/test-keys for the next runs.

import { fillKeyPool } from './fixtures/keys';

export default function globalSetup(): void {
  const started = Date.now();
  const made = fillKeyPool();
  if (made > 0) {
    process.stderr.write(`\n[test keys] made ${made} RSA keys in ${Date.now() - started} ms\n`);
  }
}
