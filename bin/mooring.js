#!/usr/bin/env node
'use strict';
// The `mooring` command: the compiled CLI in dist/ (npm run build).
require('../dist/cli/main.js')
  .main(process.argv)
  .then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      process.stderr.write(`mooring: ${err && err.message ? err.message : String(err)}\n`);
      process.exitCode = 1;
    },
  );
