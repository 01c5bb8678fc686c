#!/usr/bin/env node
'use strict';
// The `mooring` command: the compiled CLI in dist/ (npm run build). `mooring agent`, in every
// meshed Pod, loads the agent's command alone (dist/cli/agent-main.js).
require(process.argv[2] === 'agent' ? '../dist/cli/agent-main.js' : '../dist/cli/main.js')
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
