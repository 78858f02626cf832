#!/usr/bin/env node
// Entry point for `npx vfiod`: runs the compiled CLI (built by `npm install` via the `prepare` script).
import('../dist/cli/main.js').then(
  (cli) => cli.main(process.argv.slice(2)),
  (error) => {
    process.stderr.write(`vfiod: cannot load the compiled CLI (run 'npm install' first): ${error.message}\n`);
    process.exit(1);
  },
);
